package repoconfig

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Environment finds an environment by name, ignoring case as GitHub does.
func (c *Config) Environment(name string) (*Environment, bool) {
	if env, ok := c.Environments[name]; ok {
		return env, true
	}
	for n, env := range c.Environments {
		if strings.EqualFold(n, name) {
			return env, true
		}
	}
	return nil, false
}

// EnvironmentNames lists the environments, sorted, e.g. for the reply to a
// command naming an unknown one.
func (c *Config) EnvironmentNames() []string {
	return slices.Sorted(maps.Keys(c.Environments))
}

// ForBranch is the environment a push to branch deploys to, or nil. It takes
// a branch name; a full ref "refs/heads/main" is accepted too.
func (c *Config) ForBranch(branch string) *Environment {
	branch = strings.TrimPrefix(branch, "refs/heads/")
	if branch == "" {
		return nil
	}
	for _, env := range c.Environments {
		if env.Branch == branch {
			return env
		}
	}
	return nil
}

var permissionNames = [...]string{
	PermNone:     "none",
	PermRead:     "read",
	PermTriage:   "triage",
	PermWrite:    "write",
	PermMaintain: "maintain",
	PermAdmin:    "admin",
}

// ParsePermission reads one of GitHub's repository permission strings:
// admin, maintain, write, triage, read or none.
func ParsePermission(s string) (Permission, bool) {
	for p, name := range permissionNames {
		if strings.EqualFold(s, name) {
			return Permission(p), true
		}
	}
	return PermNone, false
}

// String is GitHub's name for the permission.
func (p Permission) String() string {
	if p >= 0 && int(p) < len(permissionNames) {
		return permissionNames[p]
	}
	return "Permission(" + strconv.Itoa(int(p)) + ")"
}

// Allows reports whether login, holding permission p on the repository, may
// deploy or roll back. Nobody below write may, whatever the list says: a
// list of logins narrows who among the writers may deploy, it never grants
// more (so a login left in the list after losing access cannot deploy).
// Logins are compared ignoring case, as GitHub does.
func (d Deployers) Allows(login string, p Permission) bool {
	if p < PermWrite {
		return false
	}
	if len(d.Logins) > 0 {
		return slices.ContainsFunc(d.Logins, func(l string) bool { return strings.EqualFold(l, login) })
	}
	return p >= d.Min
}

// String says who may deploy, to finish a sentence like "only %s can deploy
// to production": "people with write permission or higher", "alice and bob".
func (d Deployers) String() string {
	switch n := len(d.Logins); n {
	case 0:
		if d.Min >= PermAdmin {
			return "people with admin permission"
		}
		return "people with " + max(d.Min, PermWrite).String() + " permission or higher"
	case 1:
		return d.Logins[0]
	default:
		return strings.Join(d.Logins[:n-1], ", ") + " and " + d.Logins[n-1]
	}
}

// String is the amount as written in the file: "3" or "25%".
func (a Amount) String() string {
	if a.Percent > 0 {
		return strconv.FormatFloat(a.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(a.Count)
}
