"""`dattavani-asr serve` on loopback for the tools that talk to it (server_client_test.py,
stream_sessions.py): the release binary started on a free port, ready when /ready says so.

Import it from a tool in this folder with `import asr_server` (the tool's folder is on
`sys.path` when it runs as `python3 tools/NAME.py`).
"""
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "dattavani-asr")


def start(*args):
    """Starts `dattavani-asr --quiet serve --port 0 ARGS`; returns (the process, its base URL
    `http://host:port`) once its models are loaded. Exits with the server's first line when it
    does not start."""
    proc = subprocess.Popen([BIN, "--quiet", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"server did not start: {line!r}")
    url = line.split("listening on ", 1)[1]
    # /ready is 503 until the models are loaded.
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/ready") as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.2)
    return proc, url
