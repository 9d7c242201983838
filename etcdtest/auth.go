package etcdtest

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnableAuth turns on authentication in the cluster cli talks to: it adds
// the user "root" with rootPassword and the root role, and enables auth.
// From then on every client needs credentials (WithAuth); cli itself,
// made without them, is refused. Use a server of the test's own: auth is
// cluster-wide.
func EnableAuth(ctx context.Context, cli *clientv3.Client, rootPassword string) error {
	if _, err := cli.UserAdd(ctx, "root", rootPassword); err != nil {
		return fmt.Errorf("etcdtest: add root: %w", err)
	}
	if _, err := cli.RoleAdd(ctx, "root"); err != nil {
		return fmt.Errorf("etcdtest: add root role: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("etcdtest: grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcdtest: enable auth: %w", err)
	}
	return nil
}

// WithAuth makes the client authenticate as user.
func WithAuth(user, password string) ClientOption {
	return func(cfg *clientv3.Config) { cfg.Username, cfg.Password = user, password }
}

// AddUser adds user with password and a role of the same name that may
// read (and, with write, also write) the keys under prefix, and nothing
// else: the role coord needs is readwrite on its root prefix. root is a
// client authenticated as root.
func AddUser(ctx context.Context, root *clientv3.Client, user, password, prefix string, write bool) error {
	if _, err := root.UserAdd(ctx, user, password); err != nil {
		return fmt.Errorf("etcdtest: add user %s: %w", user, err)
	}
	if _, err := root.RoleAdd(ctx, user); err != nil {
		return fmt.Errorf("etcdtest: add role %s: %w", user, err)
	}
	perm := clientv3.PermissionType(clientv3.PermRead)
	if write {
		perm = clientv3.PermissionType(clientv3.PermReadWrite)
	}
	if _, err := root.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), perm); err != nil {
		return fmt.Errorf("etcdtest: grant %s on %s: %w", user, prefix, err)
	}
	if _, err := root.UserGrantRole(ctx, user, user); err != nil {
		return fmt.Errorf("etcdtest: grant role %s: %w", user, err)
	}
	return nil
}
