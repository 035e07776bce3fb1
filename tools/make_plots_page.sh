#!/usr/bin/env bash
# Rebuild .dvc/plots/offline.html: dvc-render's page with vega, vega-lite and vega-embed inlined (same versions
# dvc-render loads from a CDN), so that `dvc plots show` renders without the internet. Needs npm once.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && for p in vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2; do npm pack "$p" --silent >/dev/null; done
 for t in *.tgz; do mkdir "${t%.tgz}" && tar xzf "$t" -C "${t%.tgz}" --strip-components=1; done)
python3 - "$tmp" <<'PY'
import sys
from pathlib import Path
v = Path(sys.argv[1])
parts = []
for name, f in [("vega 5.20.2 (BSD-3-Clause)", "vega-5.20.2/build/vega.min.js"),
                ("vega-lite 5.2.0 (BSD-3-Clause)", "vega-lite-5.2.0/build/vega-lite.min.js"),
                ("vega-embed 6.18.2 (BSD-3-Clause)", "vega-embed-6.18.2/build/vega-embed.min.js")]:
    parts.append(f"<!-- {name}, from the npm registry, the versions dvc-render loads from a CDN -->\n"
                 f"<script>{(v / f).read_text()}</script>")
page = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>gradlab: DVC plots</title>
<!-- `dvc plots show` puts the plots in the body; vega is inlined below so that the page renders offline
     (dvc-render's default page loads it from cdn.jsdelivr.net). Built by tools/make_plots_page.sh. -->
""" + "\n".join(parts) + """
<style>body{font-family:sans-serif} table{border-spacing:15px}</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""
Path(".dvc/plots/offline.html").write_text(page)
PY
