"""SPDX license expressions: the manifest's `license` on a file, and what a Debian package's copyright file says."""

from functools import cache


@cache
def licensing():
    from license_expression import get_spdx_licensing  # spdx-tools' own dependency: the SPDX license list

    return get_spdx_licensing()


def license_problem(text):
    """None when `text` is an SPDX license expression of known ids, else what is wrong with it."""
    info = licensing().validate(text, strict=True)
    if not info.errors:
        return None
    unknown = [s for s in info.invalid_symbols if s]
    if unknown:
        return "names no SPDX license ({})".format(", ".join(unknown))
    return "is not a license expression"


def normalized(text):
    """The expression as SPDX spells it (GPL-2.0+ -> GPL-2.0-or-later), or None when it is not one."""
    info = licensing().validate(text, strict=True)
    return None if info.errors else info.normalized_expression


def debian_copyright_license(text):
    """The license of the `Files: *` paragraph of a machine-readable Debian copyright file (DEP-5), as an SPDX
    expression, or None when the file is not machine-readable or names no SPDX license there. Debian's short
    names mostly are SPDX ids (Apache-2.0, MIT, GPL-2+ spelled GPL-2.0+ by SPDX)."""
    if not text.startswith("Format:"):
        return None
    for paragraph in text.split("\n\n"):
        fields = {}
        for line in paragraph.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if fields.get("files", "").split() == ["*"] and fields.get("license"):
            name = fields["license"].split("\n")[0]
            for candidate in (name, _debian_to_spdx(name)):
                spdx = normalized(candidate) if candidate else None
                if spdx:
                    return spdx
            return None
    return None


def _debian_to_spdx(name):
    """Debian's `GPL-2+` style (DEP-5) to SPDX's `GPL-2.0+`, word by word."""
    words = []
    for word in name.replace(",", " ").split():
        base, plus = (word[:-1], "+") if word.endswith("+") else (word, "")
        if base[:4] in ("GPL-", "LGPL", "AGPL") and base.rsplit("-", 1)[-1].isdigit():
            base += ".0"
        words.append(base + plus)
    return " ".join(w if w not in ("or", "and") else w.upper() for w in words)
