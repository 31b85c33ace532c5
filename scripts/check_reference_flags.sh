#!/bin/sh
# Every reference flag listed in docs/reference_flags.md is in the tool's --help (either spelling).
# Usage: check_reference_flags.sh DOC TRAIN TRAIN_JIT GENERATE
doc=$1
status=0
check() {  # $1 section title part, $2 tool
  help=$("$2" --help 2>&1)
  flags=$(awk -v t="$1" '/^## /{on = index($0, t) > 0} on && /^\| `--/{split($0, c, "`"); print c[2]}' "$doc")
  [ -n "$flags" ] || { echo "no flags found under '$1'"; status=1; return; }
  n=0
  for f in $flags; do
    n=$((n + 1))
    other=$(echo "$f" | sed 's/^--//; y/_-/-_/; s/^/--/')
    if ! printf '%s\n' "$help" | grep -q -e "$f\([ ,=]\|$\)" -e "$other\([ ,=]\|$\)"; then
      echo "$2: the documented reference flag $f is not in --help"
      status=1
    fi
  done
  echo "$1: $n flags checked"
}
check "irepa-train\` and" "$2"
check "irepa-train-jit" "$3"
check "irepa-generate" "$4"
exit $status
