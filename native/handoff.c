/*
 * moat-handoff SOCKET PORT [-- FALLBACK ARGV...]
 *
 * Runs inside a sandbox with a network: makes the proxy's listening socket on 127.0.0.1:PORT in
 * the sandbox's own network namespace and hands it to the egress gateway over SOCKET (a unix
 * socket moat mounts read-only). The gateway then accepts the sandbox's connections itself; this
 * process only keeps the handover alive: when the gateway goes away (a restart), it hands the
 * same socket to the next one.
 *
 * If the gateway cannot take it (no SOCKET, or no answer within five seconds at the start), it
 * runs FALLBACK instead: the relay moat used before, which needs no handover.
 * Linked statically: it runs in any image, with whatever C library that image has or lacks.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "send-descriptors.h"

static int hand_over(const char *path, int listener) {
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return -1;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) {
    close(sock);
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(address.sun_path, path);
  if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
    int saved = errno;
    close(sock);
    errno = saved;
    return -1;
  }
  /* An answer within five seconds, or this gateway is no good; the wait for its end has no limit. */
  struct timeval limit = {.tv_sec = 5};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  char answer;
  if (send_descriptors(sock, &listener, 1) != 0 || read(sock, &answer, 1) != 1 || answer != 'k') {
    close(sock);
    errno = EPROTO;
    return -1;
  }
  struct timeval forever = {0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
  return sock;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: moat-handoff SOCKET PORT [-- FALLBACK...]\n");
    return 2;
  }
  const char *path = argv[1];
  int port = atoi(argv[2]);
  char **fallback = argc > 4 && strcmp(argv[3], "--") == 0 ? argv + 4 : NULL;

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int on = 1;
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (listener < 0 || port < 1 || port > 65535 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4096) != 0) {
    perror("moat-handoff: listen");
    if (fallback) execvp(fallback[0], fallback);
    return 1;
  }

  double started = now();
  int handed = 0;
  for (;;) {
    int sock = hand_over(path, listener);
    if (sock >= 0) {
      handed = 1;
      /* The gateway keeps the connection while it holds the socket: its end is the cue to hand over again. */
      char ignored[64];
      while (read(sock, ignored, sizeof ignored) > 0) {
      }
      close(sock);
    } else if (!handed && fallback && (errno == ENOENT || now() - started > 5)) {
      close(listener);
      execvp(fallback[0], fallback);
      perror("moat-handoff: fallback");
      return 127;
    }
    usleep(handed ? 200000 : 50000);
  }
}
