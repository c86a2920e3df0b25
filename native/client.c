// moat-client: the `moat` command's native front (bin/moat runs it when it was built). It runs
// `moat exec` and `moat run` (without --tty) on the user's warm CLI server (src/cli/server.ts, which documents
// the wire format) without starting Node; every other command, and exec or run when no server answers,
// goes to Node (bin/moat.js) unchanged, with the same environment and arguments.
//
// The server is found as bin/moat.js finds it (bin/server-client.js serverKey(): the same bytes
// hashed the same way), in a directory only this user can enter, and used only when the socket
// and the process listening on it are this user's own. Output frames are written through as the
// command wrote them, as the Node client does.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

// ---- SHA-256 (FIPS 180-4), for the server's key ----
typedef struct { uint32_t h[8]; uint8_t buf[64]; uint64_t len; size_t fill; } sha256;
static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha_block(sha256 *s, const uint8_t *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h;
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void sha_init(sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof iv);
  s->len = 0;
  s->fill = 0;
}
static void sha_update(sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->len += n;
  while (n > 0) {
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    memcpy(s->buf + s->fill, p, take);
    s->fill += take; p += take; n -= take;
    if (s->fill == 64) { sha_block(s, s->buf); s->fill = 0; }
  }
}
static void sha_hex(sha256 *s, char out[65]) {
  uint64_t bits = s->len * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  sha_update(s, &pad, 1);
  while (s->fill != 56) sha_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha_update(s, len, 8);
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", (unsigned)(s->h[i / 4] >> (24 - 8 * (i % 4))) & 0xff);
}

// ---- small helpers ----
static void field(sha256 *s, const char *text) { sha_update(s, text, strlen(text) + 1); }
static void number_field(sha256 *s, long long n) {
  char text[32];
  snprintf(text, sizeof text, "%lld", n);
  field(s, text);
}
static void file_fields(sha256 *s, const char *path, const struct stat *info) {
  field(s, path);
  number_field(s, (long long)info->st_mtim.tv_sec * 1000000000LL + info->st_mtim.tv_nsec);
  number_field(s, (long long)info->st_size);
}

static int write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w; n -= (size_t)w;
  }
  return 0;
}

// A growable byte buffer (the request line, stdin waiting for the socket).
typedef struct { char *data; size_t len, cap, off; } bytes;
static void put(bytes *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 256;
    b->data = realloc(b->data, b->cap);
    if (!b->data) { fputs("moat: out of memory\n", stderr); exit(70); }
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
}
static void put_json_string(bytes *b, const char *s) {
  put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; put(b, esc, 2); }
    else if (*p < 0x20 || *p == 0x7f) { snprintf(esc, sizeof esc, "\\u%04x", *p); put(b, esc, 6); }
    else put(b, p, 1);
  }
  put(b, "\"", 1);
}

// ---- which command runs here ----
static const char *const VOLATILE[] = {"PWD", "OLDPWD", "_", "SHLVL"};
static const char *const PATH_VARIABLES[] = {"MOAT_HOME", "MOAT_CONFIG", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "HOME"};

/**
 * As servedCommand() in bin/server-client.js, for exec (no -t/--tty) and run (no --tty; its -t is
 * --template): no server turned off, absolute paths. run too, since a claim of a task made ahead
 * is a few hundred ms on the server, and a Node start would add its own on top of each.
 */
static int served_exec(int argc, char **argv) {
  if (argc < 2) return 0;
  int run = strcmp(argv[1], "run") == 0;
  if (!run && strcmp(argv[1], "exec") != 0) return 0;
  const char *server = getenv("MOAT_SERVER");
  if (server && strcmp(server, "off") == 0) return 0;
  for (size_t i = 0; i < sizeof PATH_VARIABLES / sizeof *PATH_VARIABLES; i++) {
    const char *value = getenv(PATH_VARIABLES[i]);
    if (value && *value && *value != '/') return 0;
  }
  for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
    if ((!run && strcmp(argv[i], "-t") == 0) || strcmp(argv[i], "--tty") == 0) return 0;
  return 1;
}

/** The node that `#!/usr/bin/env node` would run: the first executable `node` on PATH, resolved. */
static int find_node(char out[PATH_MAX]) {
  const char *path = getenv("PATH");
  if (!path) return -1;
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    char candidate[PATH_MAX];
    if (n > 0 && n + 6 < sizeof candidate) {
      memcpy(candidate, path, n);
      memcpy(candidate + n, "/node", 6);
      struct stat info;
      if (stat(candidate, &info) == 0 && S_ISREG(info.st_mode) && access(candidate, X_OK) == 0 && realpath(candidate, out)) return 0;
    }
    if (!end) break;
    path = end + 1;
  }
  return -1;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int volatile_entry(const char *entry) {
  for (size_t i = 0; i < sizeof VOLATILE / sizeof *VOLATILE; i++) {
    size_t n = strlen(VOLATILE[i]);
    if (strncmp(entry, VOLATILE[i], n) == 0 && entry[n] == '=') return 1;
  }
  return 0;
}

/**
 * The warm server's socket for this build, this node and this environment (serverKey() in
 * bin/server-client.js hashes the same fields); NULL when the directory is not this user's alone.
 */
static int server_socket(const char *bundle, const char *node, char out[sizeof(((struct sockaddr_un *)0)->sun_path)]) {
  struct stat bundle_info, node_info, dir_info;
  if (stat(bundle, &bundle_info) != 0 || stat(node, &node_info) != 0) return -1;
  uid_t uid = getuid();
  sha256 s;
  sha_init(&s);
  field(&s, "moat-server-2");
  file_fields(&s, bundle, &bundle_info);
  file_fields(&s, node, &node_info);
  number_field(&s, (long long)uid);
  size_t count = 0;
  for (char **e = environ; *e; e++) count++;
  char **entries = calloc(count + 1, sizeof *entries);
  if (!entries) return -1;
  size_t kept = 0;
  for (char **e = environ; *e; e++)
    if (strchr(*e, '=') && **e != '=' && !volatile_entry(*e)) entries[kept++] = *e;
  qsort(entries, kept, sizeof *entries, compare_strings);
  for (size_t i = 0; i < kept; i++) {
    // A name set twice (only a hand-made environment has that) counts once.
    size_t name = strcspn(entries[i], "=");
    if (i > 0 && strncmp(entries[i - 1], entries[i], name + 1) == 0) continue;
    field(&s, entries[i]);
  }
  free(entries);
  char key[65];
  sha_hex(&s, key);
  key[32] = '\0';

  const char *base = getenv("XDG_RUNTIME_DIR");
  char tmp[PATH_MAX];
  if (!base || !*base) {
    base = getenv("TMPDIR");
    if (!base || !*base) base = getenv("TMP");
    if (!base || !*base) base = getenv("TEMP");
    if (!base || !*base) base = "/tmp";
    snprintf(tmp, sizeof tmp, "%s", base);
    size_t n = strlen(tmp);
    if (n > 1 && tmp[n - 1] == '/') tmp[n - 1] = '\0';
    base = tmp;
  }
  char dir[PATH_MAX];
  if ((size_t)snprintf(dir, sizeof dir, "%s/moat-%u", base, (unsigned)uid) >= sizeof dir) return -1;
  // Somebody else's directory (made first, in a shared /tmp) is never used.
  if (lstat(dir, &dir_info) != 0 || !S_ISDIR(dir_info.st_mode) || dir_info.st_uid != uid || (dir_info.st_mode & 077) != 0) return -1;
  if ((size_t)snprintf(out, sizeof(((struct sockaddr_un *)0)->sun_path), "%s/%s.sock", dir, key) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return -1;
  return 0;
}

/** A connection to the server at `path`: only a socket of this user's, with this user's process on it. */
static int connect_server(const char *path) {
  struct stat info;
  uid_t uid = getuid();
  if (lstat(path, &info) != 0 || !S_ISSOCK(info.st_mode) || info.st_uid != uid) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  struct ucred peer;
  socklen_t size = sizeof peer;
  if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 || peer.uid != uid) {
    close(fd);
    return -1;
  }
  return fd;
}

// ---- the command on the server ----
static int signal_pipe[2] = {-1, -1};
static void on_signal(int signal) {
  int saved = errno;
  unsigned char byte = (unsigned char)signal;
  (void)!write(signal_pipe[1], &byte, 1);
  errno = saved;
}

static const char SERVER_GONE[] = "moat: error: the moat server ended before the command finished\n  hint: check the task with moat ls before running it again; MOAT_SERVER=off runs each command in its own process\n";

static void frame(bytes *out, uint8_t type, const void *body, uint32_t n) {
  uint8_t head[5] = {type, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  put(out, head, 5);
  put(out, body, n);
}

/** Runs the command on the connected server; returns its exit status (70 when the server failed it). */
static int run_on_server(int fd, int argc, char **argv, const char *node, const char *script) {
  int stdin_tty = isatty(0);
  bytes out = {0};
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) {
    fprintf(stderr, "moat: error: cannot read the current directory: %s\n", strerror(errno));
    return 70;
  }
  put(&out, "{\"argv\":[", 9);
  put_json_string(&out, node);
  put(&out, ",", 1);
  put_json_string(&out, script);
  for (int i = 1; i < argc; i++) {
    put(&out, ",", 1);
    put_json_string(&out, argv[i]);
  }
  put(&out, "],\"cwd\":", 8);
  put_json_string(&out, cwd);
  put(&out, stdin_tty ? ",\"stdinIsTTY\":true}\n" : ",\"stdinIsTTY\":false}\n", stdin_tty ? 20 : 21);

  // Ctrl-C and TERM go to the server, which stops the command; a second one ends this client.
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    fputs(SERVER_GONE, stderr);
    return 70;
  }
  struct sigaction action = {.sa_handler = on_signal};
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  signal(SIGPIPE, SIG_IGN);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  // As in a process of its own: a terminal's stdin is left alone without --tty.
  int reading_stdin = !stdin_tty;
  int interrupts = 0;
  uint8_t head[5];
  size_t head_fill = 0;
  uint64_t body_left = 0;
  uint8_t status[4];
  size_t status_fill = 0;
  char chunk[65536];
  for (;;) {
    struct pollfd fds[3] = {{.fd = fd, .events = POLLIN | (out.len > out.off ? POLLOUT : 0)}, {.fd = signal_pipe[0], .events = POLLIN}, {.fd = reading_stdin && out.len == out.off ? 0 : -1, .events = POLLIN}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      fputs(SERVER_GONE, stderr);
      return 70;
    }
    if (fds[1].revents & POLLIN) {
      unsigned char signal_number;
      while (read(signal_pipe[0], &signal_number, 1) == 1) {
        interrupts += 1;
        if (interrupts > 1) exit(signal_number == SIGTERM ? 143 : 130);
        if (signal_number == SIGTERM) frame(&out, 4, "TERM", 4);
        else frame(&out, 4, "INT", 3);
      }
    }
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
      ssize_t n = read(0, chunk, sizeof chunk);
      if (n > 0) frame(&out, 1, chunk, (uint32_t)n);
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        reading_stdin = 0;
        frame(&out, 2, "", 0);
      }
    }
    // What waits for the socket goes as far as the socket takes it; the rest waits for POLLOUT.
    while (out.len > out.off) {
      ssize_t w = write(fd, out.data + out.off, out.len - out.off);
      if (w > 0) out.off += (size_t)w;
      else if (w < 0 && errno == EINTR) continue;
      else if (w < 0 && errno == EAGAIN) break;
      else { out.off = out.len; reading_stdin = 0; break; }
    }
    if (out.off == out.len) out.off = out.len = 0;
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      fputs(SERVER_GONE, stderr);
      return 70;
    }
    // Frames: a type byte, a 32-bit length, the bytes; a frame may arrive in any number of reads.
    for (size_t at = 0; at < (size_t)n;) {
      if (head_fill < 5) {
        head[head_fill++] = (uint8_t)chunk[at++];
        if (head_fill == 5) {
          body_left = (uint64_t)head[1] << 24 | (uint64_t)head[2] << 16 | (uint64_t)head[3] << 8 | head[4];
          status_fill = 0;
          if (head[0] == 3 && body_left != 4) {
            fputs(SERVER_GONE, stderr);
            return 70;
          }
        }
        if (head_fill < 5 || body_left > 0) continue;
      } else {
        size_t take = (size_t)n - at < body_left ? (size_t)n - at : (size_t)body_left;
        if (head[0] == 1 || head[0] == 2) {
          if (write_all(head[0] == 1 ? 1 : 2, chunk + at, take) != 0) {
            // A closed pipe (moat exec … | head) is the reader's choice, not an error.
            if (errno == EPIPE) return 0;
            return 70;
          }
        } else if (head[0] == 3) {
          memcpy(status + status_fill, chunk + at, take);
          status_fill += take;
        }
        at += take;
        body_left -= take;
        if (body_left > 0) continue;
      }
      if (head[0] == 3) return (int32_t)((uint32_t)status[0] << 24 | (uint32_t)status[1] << 16 | (uint32_t)status[2] << 8 | status[3]);
      head_fill = 0;
    }
  }
}

int main(int argc, char **argv) {
  // Started with stdin, stdout or stderr closed, the socket must not take its number (as Node does).
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) < 0) return 70;
  char self[PATH_MAX], root[PATH_MAX], script[PATH_MAX + 32], bundle[PATH_MAX + 32], node[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fputs("moat: error: cannot find where moat is installed (/proc/self/exe)\n", stderr);
    return 70;
  }
  self[n] = '\0';
  // <root>/dist/native/moat-client
  snprintf(root, sizeof root, "%s", self);
  for (int up = 0; up < 3; up++) {
    char *slash = strrchr(root, '/');
    if (!slash || slash == root) {
      fputs("moat: error: moat-client is not inside a moat package (dist/native)\n", stderr);
      return 70;
    }
    *slash = '\0';
  }
  snprintf(script, sizeof script, "%s/bin/moat.js", root);
  snprintf(bundle, sizeof bundle, "%s/dist/cli/main.bundle.cjs", root);
  int have_node = find_node(node) == 0;
  if (have_node && served_exec(argc, argv)) {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd = server_socket(bundle, node, path) == 0 ? connect_server(path) : -1;
    if (fd >= 0) {
      // The status as a process exit gives it (Node's process.exitCode does the same).
      return run_on_server(fd, argc, argv, node, script) & 0xff;
    }
  }
  // Everything else: Node, as `#!/usr/bin/env node` would have run it.
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) return 70;
  args[0] = have_node ? node : "node";
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  if (have_node) execv(node, args);
  else execvp("node", args);
  fprintf(stderr, "moat: error: cannot run node: %s\n  hint: install Node.js 20 or later and put it on PATH\n", strerror(errno));
  return 127;
}
