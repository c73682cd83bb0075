/*
 * dnsd's sockets, below Node's per-datagram cost.
 *
 * bind(netns, kind, host, port, reusePort) creates an IPv4 UDP or TCP socket
 * inside a network namespace (the calling thread enters it for the socket()
 * call only: a socket belongs to the namespace it was created in) and binds it.
 *
 * open(fd, onBatch) serves a bound UDP socket in batches: when it is readable,
 * recvmmsg takes up to BATCH datagrams into one buffer, onBatch(count) is
 * called once for all of them, and sendmmsg sends the replies it returned
 * (an array: a Buffer per slot, or nothing). Node's dgram instead allocates a
 * buffer, builds an address object and calls into JavaScript per datagram,
 * then makes a send request per reply: on the development VM that costs more
 * than dnsmasq spends on the whole query (dnsd/README.md).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "../../native/netns.h"

#define BATCH 64
/* Longer queries (never seen from a resolver) arrive cut short and are dropped. */
#define SLOT 4096

typedef struct {
  int fd;
  uv_poll_t poll;
  napi_env env;
  napi_ref on_batch;
  napi_ref self;
  /* Calls from the event loop go through napi_make_callback: Node then runs the promise jobs and
     nextTicks they queued (a forwarded query's send, say) as after any of its own I/O callbacks. */
  napi_async_context async_context;
  /* JavaScript's memory, held by these references until close: C writes into it only while open. */
  napi_ref buffer_ref, lengths_ref, peers_ref;
  unsigned char *buffer;
  uint32_t *lengths; /* per slot: the datagram's length, 0 for a cut-short one */
  uint32_t *peers;   /* per slot: address (host order), port */
  struct mmsghdr messages[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in addresses[BATCH];
  struct mmsghdr replies[BATCH];
  struct iovec reply_iov[BATCH];
  int closed;
} batch_t;

static napi_value throw_errno (napi_env env, const char *what, int error) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* The call's first `count` arguments into argv (undefined where JavaScript passed fewer). */
static void arguments (napi_env env, napi_callback_info info, size_t count, napi_value *argv) {
  napi_get_cb_info(env, info, &count, argv, NULL, NULL);
}

static int32_t int_value (napi_env env, napi_value value) {
  int32_t n = -1;
  napi_get_value_int32(env, value, &n);
  return n;
}

static napi_value bind_socket (napi_env env, napi_callback_info info) {
  napi_value argv[5];
  arguments(env, info, 5, argv);
  char netns[512] = "";
  char kind[8] = "";
  char host[64] = "";
  size_t length;
  uint32_t port;
  bool reuse_port;
  napi_valuetype netns_type;
  napi_typeof(env, argv[0], &netns_type);
  if (netns_type == napi_string) napi_get_value_string_utf8(env, argv[0], netns, sizeof netns, &length);
  napi_get_value_string_utf8(env, argv[1], kind, sizeof kind, &length);
  napi_get_value_string_utf8(env, argv[2], host, sizeof host, &length);
  napi_get_value_uint32(env, argv[3], &port);
  napi_get_value_bool(env, argv[4], &reuse_port);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) return throw_errno(env, "not an IPv4 address", EINVAL);
  int type = strcmp(kind, "tcp") == 0 ? SOCK_STREAM : SOCK_DGRAM;

  const char *what = NULL;
  int fd = socket_in_namespace(netns, AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &what);
  if (fd < 0) return throw_errno(env, what, errno);
  int one = 1;
  if (type == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int error = errno;
    close(fd);
    return throw_errno(env, "SO_REUSEPORT", error);
  }
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    int error = errno;
    close(fd);
    return throw_errno(env, "bind", error);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static void send_replies (batch_t *b, napi_value replies, uint32_t count) {
  int out = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value reply;
    bool is_buffer = false;
    if (napi_get_element(b->env, replies, i, &reply) != napi_ok) continue;
    napi_is_buffer(b->env, reply, &is_buffer);
    if (!is_buffer) continue;
    void *data;
    size_t length;
    napi_get_buffer_info(b->env, reply, &data, &length);
    b->reply_iov[out].iov_base = data;
    b->reply_iov[out].iov_len = length;
    memset(&b->replies[out], 0, sizeof b->replies[out]);
    b->replies[out].msg_hdr.msg_iov = &b->reply_iov[out];
    b->replies[out].msg_hdr.msg_iovlen = 1;
    b->replies[out].msg_hdr.msg_name = &b->addresses[i];
    b->replies[out].msg_hdr.msg_namelen = sizeof b->addresses[i];
    out++;
  }
  /* A reply the socket has no room for is dropped, as the network may drop any datagram. */
  for (int sent = 0; sent < out;) {
    int n = sendmmsg(b->fd, b->replies + sent, out - sent, MSG_DONTWAIT);
    if (n > 0) sent += n;
    else if (n < 0 && errno == EINTR) continue;
    else sent++; /* skip the one that failed */
  }
}

static void on_readable (uv_poll_t *poll, int status, int events) {
  batch_t *b = poll->data;
  if (status < 0 || b->closed) return;
  napi_handle_scope scope;
  napi_open_handle_scope(b->env, &scope);
  for (int round = 0; round < 16 && !b->closed; round++) {
    /* The kernel shortens msg_namelen to each sender's address; everything else stays as open() set it. */
    for (int i = 0; i < BATCH; i++) b->messages[i].msg_hdr.msg_namelen = sizeof b->addresses[i];
    int n = recvmmsg(b->fd, b->messages, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      b->lengths[i] = (b->messages[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : b->messages[i].msg_len;
      b->peers[2 * i] = ntohl(b->addresses[i].sin_addr.s_addr);
      b->peers[2 * i + 1] = ntohs(b->addresses[i].sin_port);
    }
    napi_value on_batch, self, argv[1], replies;
    napi_get_reference_value(b->env, b->on_batch, &on_batch);
    napi_get_reference_value(b->env, b->self, &self);
    napi_create_uint32(b->env, (uint32_t)n, &argv[0]);
    if (napi_make_callback(b->env, b->async_context, self, on_batch, 1, argv, &replies) == napi_ok) {
      bool is_array = false;
      napi_is_array(b->env, replies, &is_array);
      if (is_array) send_replies(b, replies, (uint32_t)n);
    } else {
      /* The handler catches its own errors; anything escaping it must not stop the socket. */
      napi_value ignored;
      napi_get_and_clear_last_exception(b->env, &ignored);
    }
    if (n < BATCH) break;
  }
  napi_close_handle_scope(b->env, scope);
}

static void on_closed (uv_handle_t *handle) {
  free(handle->data);
}

/* The open batch a call's first argument names, or NULL once it is closed. */
static batch_t *open_batch_argument (napi_env env, napi_value external) {
  batch_t *b = NULL;
  napi_get_value_external(env, external, (void **)&b);
  return b == NULL || b->closed ? NULL : b;
}

static napi_value open_batch (napi_env env, napi_callback_info info) {
  napi_value argv[3];
  arguments(env, info, 3, argv);
  int32_t fd = int_value(env, argv[0]);
  batch_t *b = calloc(1, sizeof *b);
  b->fd = fd;
  b->env = env;
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &b->poll, fd) != 0) {
    free(b);
    return throw_errno(env, "uv_poll_init", EBADF);
  }
  napi_value result, external, buffer, lengths_buffer, lengths, peers_buffer, peers;
  void *data;
  napi_create_buffer(env, (size_t)BATCH * SLOT, &data, &buffer);
  b->buffer = data;
  napi_create_arraybuffer(env, BATCH * sizeof *b->lengths, &data, &lengths_buffer);
  b->lengths = data;
  napi_create_typedarray(env, napi_uint32_array, BATCH, lengths_buffer, 0, &lengths);
  napi_create_arraybuffer(env, 2 * BATCH * sizeof *b->peers, &data, &peers_buffer);
  b->peers = data;
  napi_create_typedarray(env, napi_uint32_array, 2 * BATCH, peers_buffer, 0, &peers);
  for (int i = 0; i < BATCH; i++) {
    b->iov[i].iov_base = b->buffer + (size_t)i * SLOT;
    b->iov[i].iov_len = SLOT;
    b->messages[i].msg_hdr.msg_iov = &b->iov[i];
    b->messages[i].msg_hdr.msg_iovlen = 1;
    b->messages[i].msg_hdr.msg_name = &b->addresses[i];
  }
  napi_create_reference(env, buffer, 1, &b->buffer_ref);
  napi_create_reference(env, lengths, 1, &b->lengths_ref);
  napi_create_reference(env, peers, 1, &b->peers_ref);
  napi_create_reference(env, argv[1], 1, &b->on_batch);
  napi_create_reference(env, argv[2], 1, &b->self);
  napi_value resource_name;
  napi_create_string_utf8(env, "dnsd:udp-batch", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, argv[2], resource_name, &b->async_context);
  b->poll.data = b;
  uv_poll_start(&b->poll, UV_READABLE, on_readable);

  napi_create_external(env, b, NULL, NULL, &external);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "handle", external);
  napi_set_named_property(env, result, "buffer", buffer);
  napi_set_named_property(env, result, "lengths", lengths);
  napi_set_named_property(env, result, "peers", peers);
  return result;
}

/* sendTo(handle, buffer, address, port): one reply outside a batch (an answer that had to wait). */
static napi_value send_to (napi_env env, napi_callback_info info) {
  napi_value argv[4];
  arguments(env, info, 4, argv);
  batch_t *b = open_batch_argument(env, argv[0]);
  if (b == NULL) return NULL;
  void *data;
  size_t length;
  uint32_t address, port;
  napi_get_buffer_info(env, argv[1], &data, &length);
  napi_get_value_uint32(env, argv[2], &address);
  napi_get_value_uint32(env, argv[3], &port);
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(address) };
  while (sendto(b->fd, data, length, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to) < 0 && errno == EINTR) {}
  return NULL;
}

static napi_value close_batch (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  arguments(env, info, 1, argv);
  batch_t *b = open_batch_argument(env, argv[0]);
  if (b == NULL) return NULL;
  b->closed = 1;
  uv_poll_stop(&b->poll);
  close(b->fd);
  napi_delete_reference(env, b->on_batch);
  napi_delete_reference(env, b->self);
  napi_delete_reference(env, b->buffer_ref);
  napi_delete_reference(env, b->lengths_ref);
  napi_delete_reference(env, b->peers_ref);
  napi_async_destroy(env, b->async_context);
  uv_close((uv_handle_t *)&b->poll, on_closed);
  return NULL;
}

/* localPort(fd): the port a socket is bound to (what port 0 became). */
static napi_value local_port (napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  arguments(env, info, 1, argv);
  int32_t fd = int_value(env, argv[0]);
  struct sockaddr_in address;
  socklen_t length = sizeof address;
  if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return throw_errno(env, "getsockname", errno);
  napi_create_uint32(env, ntohs(address.sin_port), &result);
  return result;
}

/* closeFd(fd): for a descriptor bind() gave that will not be served after all. */
static napi_value close_fd (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  arguments(env, info, 1, argv);
  close(int_value(env, argv[0]));
  return NULL;
}

NAPI_MODULE_INIT () {
  napi_property_descriptor functions[] = {
    { "bind", NULL, bind_socket, NULL, NULL, NULL, napi_default, NULL },
    { "open", NULL, open_batch, NULL, NULL, NULL, napi_default, NULL },
    { "sendTo", NULL, send_to, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, close_batch, NULL, NULL, NULL, napi_default, NULL },
    { "localPort", NULL, local_port, NULL, NULL, NULL, napi_default, NULL },
    { "closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}
