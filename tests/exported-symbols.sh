#!/bin/sh
# The shared library exports exactly the functions the headers declare with
# SAGA_API. Usage: exported-symbols.sh build/lib/libsaga.so include/saga.h [HEADER...]
set -eu
lib=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Declarations may span lines: join the header, then take the name before "(".
cat "$@" | grep -v '^#' | tr '\n' ' ' | grep -o 'SAGA_API [^;(]*(' |
	sed -E 's/.*[ *]([a-z_0-9]+) *\($/\1/' | sort -u > "$tmp/declared"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u > "$tmp/exported"
if ! diff -u "$tmp/declared" "$tmp/exported"; then
	echo "exported symbols differ from the SAGA_API declarations (- declared, + exported)" >&2
	exit 1
fi
echo "$(wc -l < "$tmp/exported") symbols, all declared"
