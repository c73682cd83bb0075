/*
 * A socket made inside another network namespace: the calling thread enters
 * it for the socket() call only (a socket belongs to the namespace it was
 * created in) and comes straight back. Shared by weft's addons.
 */
#ifndef WEFT_NATIVE_NETNS_H
#define WEFT_NATIVE_NETNS_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include: setns() needs it"
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * socket(domain, type, protocol) in the namespace at `netns` ("" or NULL: the
 * thread's own). Returns the descriptor, or -1 with *what naming the step that
 * failed and errno set.
 */
static inline int socket_in_namespace (const char *netns, int domain, int type, int protocol, const char **what) {
  int home = -1;
  if (netns != NULL && netns[0] != '\0') {
    int target = open(netns, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      *what = netns;
      return -1;
    }
    home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(target, CLONE_NEWNET) != 0) {
      int error = errno;
      close(target);
      if (home >= 0) close(home);
      *what = "entering the namespace";
      errno = error;
      return -1;
    }
    close(target);
  }
  int fd = socket(domain, type, protocol);
  int socket_error = errno;
  if (home >= 0) {
    /* Back home before anything else runs on this thread; failing that, nothing here can be trusted. */
    if (setns(home, CLONE_NEWNET) != 0) abort();
    close(home);
  }
  if (fd < 0) {
    *what = "socket";
    errno = socket_error;
  }
  return fd;
}

#endif
