"""Make, in pipeline order: sources (download, unpack), the ABI gate, cuts, compression, assembly, signing."""
