#!/bin/sh
# The Debian packages some tests need, installed by `make test` when they are missing:
#   chromium    the status page in a real browser (tests/e2e/test_status_page.py), driven
#               by Playwright for Python; no browser is ever downloaded at run time
#   prometheus  for promtool: the alert rules are checked and unit-tested
# As root with apt-get (CI, a fresh Debian machine) they are installed; otherwise this
# says what is missing and the tests that need them skip with that reason (CI sets
# ORCHESTRATOR_REQUIRE_TOOLS=1, which turns such a skip into a failure).
set -u
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: Debian packages missing:$missing (run as root, or apt-get install" \
        "them); the tests that need them are skipped" >&2
    exit 0
fi
echo "installing Debian packages:$missing" >&2
# No service is started by a package's install (a prometheus server is not wanted).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # the package names are words
apt-get install -y -q --no-install-recommends $missing >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
status=$?
[ "$made_policy" = 1 ] && rm -f "$policy"
exit $status
