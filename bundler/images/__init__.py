"""Images at bundle time: pinning, embedding, and the archives users bring."""
