# Sourced by the scripts that start daemons (dockerd, the test cluster's components, Podman's API
# service) before they start one. A daemon outlives the script and keeps every descriptor it was
# given: a caller's open file, such as the lock of `flock FILE bash scripts/setup-host.sh`, stayed
# held by the dockerd started under it, for good, and the next `flock FILE` waited forever. So the
# script closes what it was handed beyond stdin, stdout and stderr (255 is bash's own script file).
for _fd in /proc/$$/fd/*; do
  _fd=${_fd##*/}
  if [[ $_fd -gt 2 && $_fd -ne 255 ]]; then eval "exec $_fd>&-"; fi
done
unset _fd
