"""The packages two SBOMs list (SPDX 2.3 or CycloneDX 1.6 JSON, as bundler writes them), and what changed between
them: for `bundler diff`."""

import json

from packageurl import PackageURL


def packages(text):
    """{(name, purl type or ''): version} of every package an SBOM lists: those with a purl by the purl's name
    (a file that is a Debian package counts as that package), the others (the stub's parts) by name. Files and
    layers without a purl are left out: `bundler diff` compares those from the index, by sha256."""
    doc = json.loads(text)
    found = {}

    def add(name, version, purl, is_file):
        if purl:
            parsed = PackageURL.from_string(purl)
            name = f"{parsed.namespace}/{parsed.name}" if parsed.namespace else parsed.name
            found[(name, parsed.type)] = parsed.version or version
        elif not is_file:
            found[(name, "")] = version

    if "spdxVersion" in doc:
        for p in doc.get("packages", []):
            if p.get("SPDXID") == "SPDXRef-Bundle":
                continue
            purls = [r["referenceLocator"] for r in p.get("externalRefs", []) if r.get("referenceType") == "purl"]
            purpose = p.get("primaryPackagePurpose")
            add(p["name"], p.get("versionInfo"), purls[0] if purls else None, purpose in ("FILE", "ARCHIVE"))
        return found

    def walk(components):
        for c in components:
            add(c["name"], c.get("version"), c.get("purl"), c.get("type") == "file")
            walk(c.get("components", []))

    walk(doc.get("components", []))
    return found


def changes(old_text, new_text):
    """{"added": [...], "removed": [...], "changed": [...]} of packages, each {"name", "type", "version"} (changed:
    "old" and "new" versions)."""
    old, new = packages(old_text), packages(new_text)
    out = {"added": [], "removed": [], "changed": []}
    for key in sorted(set(old) | set(new)):
        name, kind = key
        if key not in old:
            out["added"].append({"name": name, "type": kind, "version": new[key]})
        elif key not in new:
            out["removed"].append({"name": name, "type": kind, "version": old[key]})
        elif old[key] != new[key]:
            out["changed"].append({"name": name, "type": kind, "old": old[key], "new": new[key]})
    return out
