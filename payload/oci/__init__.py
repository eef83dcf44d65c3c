"""OCI registry client and image archive writer (requests imported lazily)."""
