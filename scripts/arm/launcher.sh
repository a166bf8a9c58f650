#!/bin/sh
# Runs edgestar with the Node.js shipped beside it, so the device needs no Node of its own.
# Symlinks to this file (e.g. /usr/local/bin/edgestar) work: the real path is resolved first.
here=$(dirname "$(readlink -f "$0")")
root="$here/.."
export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-32}"
# The store's and the fetch decoder's worker threads each get a glibc malloc arena that keeps
# freed memory: +61 MiB resident after a pull; 10-46 MiB with two arenas, none with one
# (measured by H25). Two keep some room for threads that allocate at once.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec "$root/node/bin/node" --enable-source-maps "$root/dist/src/cli/main.js" "$@"
