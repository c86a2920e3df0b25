/*
 * Node addon for the egress gateway: takes a listening TCP socket that a sandbox hands over a
 * unix socket (SCM_RIGHTS). Node's own API cannot receive a descriptor this way. The socket was
 * made inside the sandbox's network namespace, so the gateway can accept the sandbox's
 * connections on it directly: no relay process, no second hop, TCP's own buffers.
 *
 * Whatever arrives is the sandbox's and untrusted: anything but exactly one listening TCP socket
 * bound to loopback is closed and refused.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "send-descriptors.h"

static int is_loopback_tcp_listener(int fd) {
  int value = 0;
  socklen_t length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &length) != 0) return 0;
  int domain = value;
  if (domain != AF_INET && domain != AF_INET6) return 0;
  length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) != 0 || value != SOCK_STREAM) return 0;
  length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &value, &length) != 0 || value != IPPROTO_TCP) return 0;
  length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) != 0 || value != 1) return 0;
  struct sockaddr_storage address;
  socklen_t size = sizeof address;
  if (getsockname(fd, (struct sockaddr *)&address, &size) != 0) return 0;
  if (address.ss_family == AF_INET) return (ntohl(((struct sockaddr_in *)&address)->sin_addr.s_addr) >> 24) == 127;
  if (address.ss_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&address)->sin6_addr);
  return 0;
}

/* One message: a byte and one descriptor. Returns the descriptor, or -errno. Never blocks. */
static int receive_listener(int sock) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  /* Room for a few: descriptors beyond the first are received only to be closed. */
  union {
    struct cmsghdr header;
    char buffer[CMSG_SPACE(sizeof(int) * MOAT_MAX_DESCRIPTORS)];
  } control;
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
  ssize_t got = recvmsg(sock, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (got < 0) return -errno;
  if (got == 0) return -EPIPE;
  int fd = -1;
  int refused = (message.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int fds[MOAT_MAX_DESCRIPTORS];
    memcpy(fds, CMSG_DATA(c), count * sizeof(int));
    for (size_t i = 0; i < count; i += 1) {
      if (fd < 0) fd = fds[i];
      else {
        close(fds[i]);
        refused = 1;
      }
    }
  }
  if (fd < 0) return -EBADMSG;
  if (refused || !is_loopback_tcp_listener(fd)) {
    close(fd);
    return -EPROTO;
  }
  return fd;
}

static napi_value number(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

static napi_value js_receive_listener(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t sock = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &sock) != napi_ok) {
    napi_throw_type_error(env, NULL, "receiveListener(fd)");
    return NULL;
  }
  return number(env, receive_listener(sock));
}

static napi_value js_send_descriptors(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t sock = -1;
  uint32_t count = 0;
  int fds[MOAT_MAX_DESCRIPTORS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_get_array_length(env, argv[1], &count) != napi_ok || count < 1 || count > MOAT_MAX_DESCRIPTORS) {
    napi_throw_type_error(env, NULL, "sendDescriptors(fd, [1 to 8 fds])");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i += 1) {
    napi_value item;
    int32_t fd;
    if (napi_get_element(env, argv[1], i, &item) != napi_ok || napi_get_value_int32(env, item, &fd) != napi_ok) {
      napi_throw_type_error(env, NULL, "sendDescriptors(fd, [1 to 8 fds])");
      return NULL;
    }
    fds[i] = fd;
  }
  return number(env, send_descriptors(sock, fds, count));
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "receiveListener", NAPI_AUTO_LENGTH, js_receive_listener, NULL, &fn);
  napi_set_named_property(env, exports, "receiveListener", fn);
  napi_create_function(env, "sendDescriptors", NAPI_AUTO_LENGTH, js_send_descriptors, NULL, &fn);
  napi_set_named_property(env, exports, "sendDescriptors", fn);
  return exports;
}
