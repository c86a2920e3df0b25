#!/bin/sh
# The last step of every template image, run as root at build time with the sandbox's uid and
# gid: the unprivileged user the sandbox runs as (so files written in /workspace belong to the
# invoking host user), no setuid/setgid programs, and the two folders the user owns.
set -eu
uid=$1
gid=$2
# -o: the uid/gid may already name a system account in the base image; the agent user must still exist.
groupadd -o -g "$gid" agent
useradd -o -u "$uid" -g "$gid" -d /home/agent -s /bin/bash -M agent
# With no-new-privileges a setuid program could not gain anything, but none is better.
find / -xdev -perm /6000 -type f -exec chmod a-s {} +
mkdir -p /workspace /home/agent
chown "$uid:$gid" /workspace /home/agent
