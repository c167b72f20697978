/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_ADMIN_CLIENT_H
#define TOOLS_ADMIN_CLIENT_H

#include <stddef.h>

#include "proto/shiftadd.pb-c.h"

/*
 * The client side of shiftaddd's admin protocol (docs/protocol.md, "Admin"): one SOCK_SEQPACKET
 * connection, AdminRequest datagrams answered by one AdminReply each. Used by shiftaddctl and
 * shiftadd-bench. Not thread-safe: one caller per connection.
 */

#define ADMIN_PROTOCOL_VERSION 1

struct admin_reply {
	Shiftadd__ControlMsg *msg; /* owns everything below */
	Shiftadd__AdminReply *r;
};

/* The socket path to use: @path, else $SHIFTADD_SOCKET, $XDG_RUNTIME_DIR/shiftadd/..., /run/.... */
void admin_socket_path(const char *path, char *buf, size_t len);
/*
 * Connect to the daemon's control socket at @path (NULL: the default). Sets *ret_fd (caller
 * closes). Returns 0, or -ENOENT / -ECONNREFUSED (no daemon), -ENAMETOOLONG, another -errno.
 */
int admin_connect(const char *path, int *ret_fd);
/*
 * Send @req (protocol_version is filled in) and wait up to @timeout_ms for the reply. On 0,
 * @ret holds the reply (its status may be an error); free it with admin_reply_free(). Returns
 * -EPERM when the daemon refused the connection itself (credentials), -ESHUTDOWN / -EAGAIN for
 * other refusals, -ETIMEDOUT, -EPROTO (undecodable or unexpected reply), -ECONNRESET.
 */
int admin_call(int fd, Shiftadd__AdminRequest *req, int timeout_ms, struct admin_reply *ret);
void admin_reply_free(struct admin_reply *r);

#endif /* TOOLS_ADMIN_CLIENT_H */
