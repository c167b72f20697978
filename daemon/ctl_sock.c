// SPDX-License-Identifier: MIT
/* The control socket: listening (or inherited by socket activation), credentials, sending. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/internal.h"
#include "proto/status.h"

static int mkdir_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	/* One level is enough for /run/shiftadd and $XDG_RUNTIME_DIR/shiftadd. */
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int ctl_sock_listen(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	ret = mkdir_parent(path);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a crashed daemon: replace it, unless someone still listens. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 128) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*ret_fd = fd;
	return 0;
}

int ctl_sock_from_env(int *ret_fd)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0, fd = 3, flags;
	socklen_t len = sizeof(type);
	char *end;
	long n;

	if (!pid || !fds)
		return -ENOENT;
	if (strtol(pid, &end, 10) != (long)getpid() || *end)
		return -ENOENT;
	n = strtol(fds, &end, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (*end || n < 1)
		return -ENOENT;
	if (n > 1)
		return -EINVAL; /* we serve exactly one socket */
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return -EINVAL;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

bool ctl_sock_peer_allowed(const struct config *cfg, const struct ucred *cred)
{
	if (cred->uid == 0 || cred->uid == geteuid())
		return true;
	for (uint32_t i = 0; i < cfg->n_allow_uids; i++)
		if (cfg->allow_uids[i] == cred->uid)
			return true;
	for (uint32_t i = 0; i < cfg->n_allow_gids; i++)
		if (cfg->allow_gids[i] == cred->gid)
			return true;
	return false;
}

int ctl_sock_send(int fd, const Shiftadd__ControlMsg *m, const int *fds, int n_fds)
{
	uint8_t buf[CTL_MSG_MAX];
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cbuf;
	size_t len = shiftadd__control_msg__get_packed_size(m);
	struct iovec iov;
	struct msghdr msg = { 0 };
	ssize_t n;

	if (len > sizeof(buf) || n_fds > 4)
		return -EMSGSIZE;
	shiftadd__control_msg__pack(m, buf);
	iov.iov_base = buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (n_fds) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.b;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n_fds);
	}
	n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

void ctl_sock_send_error(int fd, int status, const char *message)
{
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT;
	Shiftadd__Error e = SHIFTADD__ERROR__INIT;

	e.status = status;
	e.message = (char *)message;
	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_ERROR;
	m.error = &e;
	(void)ctl_sock_send(fd, &m, NULL, 0);
}
