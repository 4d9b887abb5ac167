"""Command-line arguments of the gallery's examples (a module, so Sphinx can pickle the
configuration that names it)."""

import tempfile


def quick(script, gallery_conf):
    """Run every example in its quick mode (the full runs take minutes each), writing its
    figures to a scratch folder so that the committed full-run figures stay as they are."""
    return ["--quick", "--outdir", tempfile.mkdtemp(prefix="sensitivity-gallery-")]
