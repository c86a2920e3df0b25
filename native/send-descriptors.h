/* Shared by native/fdpass.c and native/handoff.c: one byte and descriptors over a unix socket. */
#ifndef MOAT_SEND_DESCRIPTORS_H
#define MOAT_SEND_DESCRIPTORS_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define MOAT_MAX_DESCRIPTORS 8

/* Sends the byte 'L' with `count` (1 to MOAT_MAX_DESCRIPTORS) descriptors. Returns 0 or -errno. */
static int send_descriptors(int sock, const int *fds, size_t count) {
  if (count < 1 || count > MOAT_MAX_DESCRIPTORS) return -EINVAL;
  char byte = 'L';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr header;
    char buffer[CMSG_SPACE(sizeof(int) * MOAT_MAX_DESCRIPTORS)];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = CMSG_SPACE(sizeof(int) * count)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&message);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * count);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  return sendmsg(sock, &message, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

#endif
