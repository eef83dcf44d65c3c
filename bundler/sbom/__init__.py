"""What is in a bundle, for the SBOM (SPDX 2.3 or CycloneDX 1.6) that `bundler make` puts inside it."""
