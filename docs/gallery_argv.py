"""Command-line arguments of the gallery's examples (a module, so Sphinx can pickle the
configuration that names it)."""


def quick(script, gallery_conf):
    """Run every example in its quick mode: the full runs take minutes each."""
    return ["--quick"]
