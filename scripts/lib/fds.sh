# Sourced by scripts/postgres-up and scripts/pgvector-up.
# A server outlives the script that starts it: it must not keep a descriptor its caller holds (a `flock` lock taken
# around the tests stayed held for as long as the server ran), so it starts with every descriptor above 2 closed.
without_inherited_fds() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    "$@"
  )
}
