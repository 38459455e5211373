#!/usr/bin/env bash
# A fake go for the build scripts' tests. Every call appends "RUN start ARGS" to
# $FAKE_GO_LOG (RUN is $FAKE_GO_RUN, the test's name for the script run), waits
# until the file $FAKE_GO_GATE exists, then simulates the subcommand:
#   go mod download -json MOD@V  prints JSON whose GoMod is $FAKE_GO_UPSTREAM_MOD
#   go mod init PATH             writes go.mod
#   go mod tidy                  writes go.sum
#   go get ...                   does nothing
#   go build [-o OUT] PKG...     writes one small executable per package (into OUT,
#                                a file, or OUT/, a directory) and appends
#                                "RUN built NAME" to $FAKE_GO_LOG, NAME being the
#                                package's last element (for ".", the module's).
set -euo pipefail

note() { printf '%s\n' "$*" >>"$FAKE_GO_LOG"; }

note "$FAKE_GO_RUN start $*"
while [ ! -e "$FAKE_GO_GATE" ]; do sleep 0.01; done

case "$1" in
mod)
  case "$2" in
  download)
    target=${*: -1}
    printf '{\n\t"Path": "%s",\n\t"Version": "%s",\n\t"GoMod": "%s",\n\t"Hash": "h1:fake="\n}\n' \
      "${target%@*}" "${target#*@}" "$FAKE_GO_UPSTREAM_MOD"
    ;;
  init) printf 'module %s\n\ngo 1.26\n' "$3" >go.mod ;;
  tidy)
    [ -f go.mod ] || { echo "go: go.mod file not found" >&2; exit 1; }
    echo "fake sum" >go.sum
    ;;
  *) echo "fake go: unsupported: $*" >&2; exit 2 ;;
  esac
  ;;
get) [ -f go.mod ] || { echo "go: go.mod file not found" >&2; exit 1; } ;;
build)
  shift
  out="" pkgs=()
  while [ $# -gt 0 ]; do
    case "$1" in
    -o) out=$2; shift 2 ;;
    -ldflags | -tags) shift 2 ;;
    -*) shift ;;
    *) pkgs+=("$1"); shift ;;
    esac
  done
  for pkg in "${pkgs[@]}"; do
    name=${pkg##*/}
    if [ "$pkg" = . ]; then name=$(sed -n 's/^module .*\///p' go.mod); fi
    if [ -z "$out" ]; then file=$name
    elif [ "${out%/}" != "$out" ] || [ ${#pkgs[@]} -gt 1 ]; then file=${out%/}/$name
    else file=$out
    fi
    printf '#!/bin/sh\necho fake %s\n' "$name" >"$file"
    chmod 0755 "$file"
    note "$FAKE_GO_RUN built $name"
  done
  ;;
*) echo "fake go: unsupported: $*" >&2; exit 2 ;;
esac
