#!/bin/sh
# Runs edgestar with the Node.js shipped beside it, so the device needs no Node of its own.
# Symlinks to this file (e.g. /usr/local/bin/edgestar) work: the real path is resolved first.
here=$(dirname "$(readlink -f "$0")")
root="$here/.."
export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-32}"
exec "$root/node/bin/node" --enable-source-maps "$root/dist/src/cli/main.js" "$@"
