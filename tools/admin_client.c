// SPDX-License-Identifier: MIT
#include "tools/admin_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/status.h"

#define REPLY_MAX (256u * 1024 + 64) /* the daemon's ADMIN_REPLY_MAX plus the wrapper */

void admin_socket_path(const char *path, char *buf, size_t len)
{
	const char *env = getenv("SHIFTADD_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");

	if (path && *path)
		snprintf(buf, len, "%s", path);
	else if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/shiftadd/shiftaddd.sock", xdg);
	else
		snprintf(buf, len, "/run/shiftadd/shiftaddd.sock");
}

int admin_connect(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[sizeof(sa.sun_path) + 1];
	int fd, ret;

	admin_socket_path(path, p, sizeof(p));
	if (strlen(p) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, p);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*ret_fd = fd;
	return 0;
}

int admin_call(int fd, Shiftadd__AdminRequest *req, int timeout_ms, struct admin_reply *ret)
{
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint8_t *buf;
	size_t len;
	ssize_t n;
	int r;

	req->protocol_version = ADMIN_PROTOCOL_VERSION;
	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_ADMIN_REQUEST;
	m.admin_request = req;
	len = shiftadd__control_msg__get_packed_size(&m);
	if (len > 4096)
		return -E2BIG; /* the daemon's control datagram limit */
	buf = malloc(REPLY_MAX);
	if (!buf)
		return -ENOMEM;
	shiftadd__control_msg__pack(&m, buf);
	n = send(fd, buf, len, MSG_NOSIGNAL);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0) {
		r = -errno;
		goto out;
	}
	if (r == 0) {
		r = -ETIMEDOUT;
		goto out;
	}
	n = recv(fd, buf, REPLY_MAX, MSG_TRUNC);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if (n == 0) {
		r = -ECONNRESET;
		goto out;
	}
	if ((size_t)n > REPLY_MAX) {
		r = -EPROTO;
		goto out;
	}
	ret->msg = shiftadd__control_msg__unpack(NULL, (size_t)n, buf);
	if (!ret->msg) {
		r = -EPROTO;
		goto out;
	}
	if (ret->msg->msg_case == SHIFTADD__CONTROL_MSG__MSG_ERROR && ret->msg->error) {
		/* The connection itself was refused (credentials, shutdown, capacity). */
		r = status_to_errno(ret->msg->error->status);
		if (r == 0)
			r = -EPROTO;
		shiftadd__control_msg__free_unpacked(ret->msg, NULL);
		ret->msg = NULL;
		goto out;
	}
	if (ret->msg->msg_case != SHIFTADD__CONTROL_MSG__MSG_ADMIN_REPLY ||
	    !ret->msg->admin_reply) {
		shiftadd__control_msg__free_unpacked(ret->msg, NULL);
		ret->msg = NULL;
		r = -EPROTO;
		goto out;
	}
	ret->r = ret->msg->admin_reply;
	r = 0;
out:
	free(buf);
	return r;
}

void admin_reply_free(struct admin_reply *r)
{
	if (r->msg)
		shiftadd__control_msg__free_unpacked(r->msg, NULL);
	r->msg = NULL;
	r->r = NULL;
}
