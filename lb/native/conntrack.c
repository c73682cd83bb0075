/*
 * Deleting conntrack entries over netlink: one walk of the kernel's table per
 * namespace for all of a sync's deletions there, and no process.
 *
 * The conntrack CLI dumps the whole table once per command (the kernel walks
 * every bucket: ~10 ms here even when the table is empty, 262,144 buckets
 * shared by all namespaces) and is a process per command. lb deletes, per
 * namespace, the entries of every backend that left: one dump, matched here
 * against all of them, then one delete request per entry that matched.
 *
 * deleteFlows(netns, filters) → Promise<number[]>: how many entries each filter
 * deleted; netns is a path under /run/netns, or null for this process's own.
 * Runs on libuv's thread pool. A filter is { protocol (0: any), origDst (""
 * : any), origDstPort (0: any), replySrc, replySrcPort (0: any), tcpState
 * (-1: any) }, addresses as dotted quads. An entry is deleted by the first
 * filter it matches.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>
#include "../../native/netns.h"

/* A reply the kernel does not send within this long means something is wrong; the sync reports it. */
#define TIMEOUT_MS 10000
#define RECEIVE_BYTES 65536

typedef struct {
  uint8_t protocol;
  int any_orig_dst;
  uint32_t orig_dst, reply_src;       /* network order */
  uint16_t orig_dst_port, reply_src_port; /* network order, 0: any */
  int tcp_state;
} filter_t;

typedef struct {
  char netns[512];
  filter_t *filters;
  uint32_t filter_count;
  uint32_t *deleted;
  char error[768];
  napi_deferred deferred;
  napi_async_work work;
} job_t;

/* One direction of an entry, network order. */
typedef struct {
  uint32_t src, dst;
  uint16_t sport, dport;
  uint8_t protocol;
} tuple_t;

/* A matched entry: its original tuple (and zone) is what a delete request names it by. */
typedef struct {
  tuple_t orig;
  int has_zone;
  uint16_t zone;
  uint32_t filter;
} entry_t;

static const struct nlattr *next_attr (const struct nlattr *a) {
  return (const struct nlattr *)((const char *)a + NLA_ALIGN(a->nla_len));
}
#define ATTR_TYPE(a) ((a)->nla_type & NLA_TYPE_MASK)
#define ATTR_DATA(a) ((const void *)((const char *)(a) + NLA_HDRLEN))
#define FOR_ATTRS(a, start, bytes) \
  for (const struct nlattr *a = (start), *end_ = (const struct nlattr *)((const char *)(start) + (bytes)); \
       (const char *)a + NLA_HDRLEN <= (const char *)end_ && a->nla_len >= NLA_HDRLEN && (const char *)a + a->nla_len <= (const char *)end_; \
       a = next_attr(a))

static void read_tuple (const struct nlattr *tuple, tuple_t *out) {
  FOR_ATTRS(a, ATTR_DATA(tuple), tuple->nla_len - NLA_HDRLEN) {
    if (ATTR_TYPE(a) == CTA_TUPLE_IP) {
      FOR_ATTRS(ip, ATTR_DATA(a), a->nla_len - NLA_HDRLEN) {
        if (ATTR_TYPE(ip) == CTA_IP_V4_SRC) memcpy(&out->src, ATTR_DATA(ip), 4);
        else if (ATTR_TYPE(ip) == CTA_IP_V4_DST) memcpy(&out->dst, ATTR_DATA(ip), 4);
      }
    } else if (ATTR_TYPE(a) == CTA_TUPLE_PROTO) {
      FOR_ATTRS(p, ATTR_DATA(a), a->nla_len - NLA_HDRLEN) {
        if (ATTR_TYPE(p) == CTA_PROTO_NUM) out->protocol = *(const uint8_t *)ATTR_DATA(p);
        else if (ATTR_TYPE(p) == CTA_PROTO_SRC_PORT) memcpy(&out->sport, ATTR_DATA(p), 2);
        else if (ATTR_TYPE(p) == CTA_PROTO_DST_PORT) memcpy(&out->dport, ATTR_DATA(p), 2);
      }
    }
  }
}

static int tcp_state_of (const struct nlattr *protoinfo) {
  FOR_ATTRS(a, ATTR_DATA(protoinfo), protoinfo->nla_len - NLA_HDRLEN) {
    if (ATTR_TYPE(a) != CTA_PROTOINFO_TCP) continue;
    FOR_ATTRS(t, ATTR_DATA(a), a->nla_len - NLA_HDRLEN) {
      if (ATTR_TYPE(t) == CTA_PROTOINFO_TCP_STATE) return *(const uint8_t *)ATTR_DATA(t);
    }
  }
  return -1;
}

/* The first filter the entry matches, or -1. */
static int match (const job_t *job, const tuple_t *orig, const tuple_t *reply, int tcp_state) {
  for (uint32_t i = 0; i < job->filter_count; i++) {
    const filter_t *f = &job->filters[i];
    if (f->protocol != 0 && f->protocol != orig->protocol) continue;
    if ((!f->any_orig_dst && orig->dst != f->orig_dst) || reply->src != f->reply_src) continue;
    if (f->orig_dst_port != 0 && orig->dport != f->orig_dst_port) continue;
    if (f->reply_src_port != 0 && reply->sport != f->reply_src_port) continue;
    if (f->tcp_state >= 0 && (orig->protocol != IPPROTO_TCP || tcp_state != f->tcp_state)) continue;
    return (int)i;
  }
  return -1;
}

static void fail (job_t *job, const char *what, int error) {
  snprintf(job->error, sizeof job->error, "%s: %s", what, strerror(error));
}

/*
 * Waits for the socket to be readable and reads one datagram: its length (an int, as NLMSG_OK and
 * NLMSG_NEXT count it, so the remainder cannot wrap), or -1 on error or timeout (errno set).
 */
static int receive (int fd, char *buffer) {
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int ready = poll(&p, 1, TIMEOUT_MS);
  if (ready == 0) errno = ETIMEDOUT;
  if (ready <= 0) return -1;
  return (int)recv(fd, buffer, RECEIVE_BYTES, 0);
}

static size_t put_attr (char *at, uint16_t type, const void *data, uint16_t length) {
  struct nlattr *a = (struct nlattr *)at;
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + length;
  memcpy(at + NLA_HDRLEN, data, length);
  return NLA_ALIGN(a->nla_len);
}

/* Opens a nested attribute at `at`; close_nest sets its length once its children are written. */
static size_t open_nest (char *at, uint16_t type) {
  struct nlattr *a = (struct nlattr *)at;
  a->nla_type = type | NLA_F_NESTED;
  return NLA_HDRLEN;
}
static void close_nest (char *start, char *end) {
  ((struct nlattr *)start)->nla_len = (uint16_t)(end - start);
}

static size_t message_header (char *buffer, uint16_t type, uint16_t flags, uint32_t seq) {
  struct nlmsghdr *h = (struct nlmsghdr *)buffer;
  memset(h, 0, sizeof *h);
  h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
  h->nlmsg_flags = flags;
  h->nlmsg_seq = seq;
  struct nfgenmsg *g = (struct nfgenmsg *)(buffer + NLMSG_HDRLEN);
  g->nfgen_family = AF_INET;
  g->version = NFNETLINK_V0;
  g->res_id = 0;
  return NLMSG_HDRLEN + NLMSG_ALIGN(sizeof *g);
}

/* Deletes one entry by its original tuple; 1 if it went, 0 if it had gone already, -1 on error. */
static int delete_entry (int fd, const entry_t *e, uint32_t seq, char *buffer, job_t *job) {
  char request[256];
  memset(request, 0, sizeof request);
  char *at = request + message_header(request, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq);
  char *tuple = at;
  at += open_nest(at, CTA_TUPLE_ORIG);
  char *ip = at;
  at += open_nest(at, CTA_TUPLE_IP);
  at += put_attr(at, CTA_IP_V4_SRC, &e->orig.src, 4);
  at += put_attr(at, CTA_IP_V4_DST, &e->orig.dst, 4);
  close_nest(ip, at);
  char *proto = at;
  at += open_nest(at, CTA_TUPLE_PROTO);
  at += put_attr(at, CTA_PROTO_NUM, &e->orig.protocol, 1);
  if (e->orig.protocol == IPPROTO_TCP || e->orig.protocol == IPPROTO_UDP) {
    at += put_attr(at, CTA_PROTO_SRC_PORT, &e->orig.sport, 2);
    at += put_attr(at, CTA_PROTO_DST_PORT, &e->orig.dport, 2);
  }
  close_nest(proto, at);
  close_nest(tuple, at);
  if (e->has_zone) at += put_attr(at, CTA_ZONE, &e->zone, 2);
  ((struct nlmsghdr *)request)->nlmsg_len = (uint32_t)(at - request);
  if (send(fd, request, at - request, 0) < 0) {
    fail(job, "sending a delete request", errno);
    return -1;
  }
  for (;;) {
    int n = receive(fd, buffer);
    if (n < 0) {
      fail(job, "waiting for the kernel's answer to a delete", errno);
      return -1;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      int error = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
      if (error == 0) return 1;
      if (error == ENOENT) return 0;
      fail(job, "deleting an entry", error);
      return -1;
    }
  }
}

static void run (napi_env env, void *data) {
  job_t *job = data;
  const char *what = NULL;
  int fd = socket_in_namespace(job->netns, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER, &what);
  if (fd < 0) {
    fail(job, what, errno);
    return;
  }
  char *buffer = malloc(RECEIVE_BYTES);
  entry_t *entries = NULL;
  size_t count = 0, capacity = 0;
  struct sockaddr_nl local = { .nl_family = AF_NETLINK };
  /* Room for a dump of a busy table between two reads (FORCE: above rmem_max, as root). */
  int size = 1 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (buffer == NULL || bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
    fail(job, buffer == NULL ? "out of memory" : "bind", buffer == NULL ? ENOMEM : errno);
    goto done;
  }

  char request[64];
  memset(request, 0, sizeof request);
  size_t length = message_header(request, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1);
  ((struct nlmsghdr *)request)->nlmsg_len = (uint32_t)length;
  if (send(fd, request, length, 0) < 0) {
    fail(job, "sending the dump request", errno);
    goto done;
  }
  for (int dumping = 1; dumping;) {
    int n = receive(fd, buffer);
    if (n < 0) {
      fail(job, "reading the conntrack table", errno);
      goto done;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        dumping = 0;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        int error = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
        if (error != 0) {
          fail(job, "reading the conntrack table", error);
          goto done;
        }
        continue;
      }
      size_t header = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
      if (h->nlmsg_len < header) continue;
      tuple_t orig = { 0 }, reply = { 0 };
      int tcp_state = -1, has_zone = 0;
      uint16_t zone = 0;
      FOR_ATTRS(a, (const struct nlattr *)((const char *)h + header), h->nlmsg_len - header) {
        switch (ATTR_TYPE(a)) {
          case CTA_TUPLE_ORIG: read_tuple(a, &orig); break;
          case CTA_TUPLE_REPLY: read_tuple(a, &reply); break;
          case CTA_PROTOINFO: tcp_state = tcp_state_of(a); break;
          case CTA_ZONE: has_zone = 1; memcpy(&zone, ATTR_DATA(a), 2); break;
        }
      }
      int which = match(job, &orig, &reply, tcp_state);
      if (which < 0) continue;
      if (count == capacity) {
        capacity = capacity == 0 ? 64 : capacity * 2;
        entry_t *grown = realloc(entries, capacity * sizeof *entries);
        if (grown == NULL) {
          fail(job, "out of memory", ENOMEM);
          goto done;
        }
        entries = grown;
      }
      entries[count++] = (entry_t){ orig, has_zone, zone, (uint32_t)which };
    }
  }
  /* After the dump, never during it: a delete while the kernel walks would be answered between its parts. */
  for (size_t i = 0; i < count; i++) {
    int deleted = delete_entry(fd, &entries[i], (uint32_t)(i + 2), buffer, job);
    if (deleted < 0) goto done;
    job->deleted[entries[i].filter] += (uint32_t)deleted;
  }
done:
  free(entries);
  free(buffer);
  close(fd);
}

static void finish (napi_env env, napi_status status, void *data) {
  job_t *job = data;
  if (job->error[0] != '\0') {
    napi_value message, error;
    napi_create_string_utf8(env, job->error, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
  } else {
    napi_value counts;
    napi_create_array_with_length(env, job->filter_count, &counts);
    for (uint32_t i = 0; i < job->filter_count; i++) {
      napi_value n;
      napi_create_uint32(env, job->deleted[i], &n);
      napi_set_element(env, counts, i, n);
    }
    napi_resolve_deferred(env, job->deferred, counts);
  }
  napi_delete_async_work(env, job->work);
  free(job->filters);
  free(job->deleted);
  free(job);
}

static uint32_t property_uint (napi_env env, napi_value object, const char *name) {
  napi_value value;
  uint32_t n = 0;
  if (napi_get_named_property(env, object, name, &value) == napi_ok) napi_get_value_uint32(env, value, &n);
  return n;
}

/* 1: an address, 0: the empty string, -1: anything else. */
static int property_address (napi_env env, napi_value object, const char *name, uint32_t *out) {
  napi_value value;
  char text[32] = "";
  size_t length = 0;
  if (napi_get_named_property(env, object, name, &value) != napi_ok) return -1;
  if (napi_get_value_string_utf8(env, value, text, sizeof text, &length) != napi_ok) return -1;
  if (length == 0) return 0;
  return inet_pton(AF_INET, text, out) == 1 ? 1 : -1;
}

static napi_value delete_flows (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "deleteFlows: out of memory");
    return NULL;
  }
  napi_valuetype netns_type;
  napi_typeof(env, argv[0], &netns_type);
  size_t length;
  if (netns_type == napi_string) napi_get_value_string_utf8(env, argv[0], job->netns, sizeof job->netns, &length);
  napi_get_array_length(env, argv[1], &job->filter_count);
  job->filters = calloc(job->filter_count + 1, sizeof *job->filters);
  job->deleted = calloc(job->filter_count + 1, sizeof *job->deleted);
  if (job->filters == NULL || job->deleted == NULL) {
    free(job->filters);
    free(job->deleted);
    free(job);
    napi_throw_error(env, NULL, "deleteFlows: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < job->filter_count; i++) {
    napi_value f;
    napi_get_element(env, argv[1], i, &f);
    filter_t *out = &job->filters[i];
    napi_value state;
    int32_t tcp_state = -1;
    if (napi_get_named_property(env, f, "tcpState", &state) == napi_ok) napi_get_value_int32(env, state, &tcp_state);
    out->tcp_state = tcp_state;
    out->protocol = (uint8_t)property_uint(env, f, "protocol");
    out->orig_dst_port = htons((uint16_t)property_uint(env, f, "origDstPort"));
    out->reply_src_port = htons((uint16_t)property_uint(env, f, "replySrcPort"));
    int orig_dst = property_address(env, f, "origDst", &out->orig_dst);
    out->any_orig_dst = orig_dst == 0;
    if (orig_dst < 0 || property_address(env, f, "replySrc", &out->reply_src) != 1) {
      free(job->filters);
      free(job->deleted);
      free(job);
      napi_throw_type_error(env, NULL, "deleteFlows: origDst must be an IPv4 address or empty, replySrc an IPv4 address");
      return NULL;
    }
  }
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "weft:conntrack-delete", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, run, finish, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

NAPI_MODULE_INIT () {
  napi_property_descriptor functions[] = {
    { "deleteFlows", NULL, delete_flows, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}
