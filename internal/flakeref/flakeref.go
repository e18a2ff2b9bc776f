// Package flakeref reads what the controller needs to know about a flake
// reference without fetching it: which repository and branch it follows
// (for push webhooks) and whether it can lock to another revision tomorrow
// (for refresh builds). One reader, so the two never disagree.
package flakeref

import (
	"net/url"
	"regexp"
	"strings"
)

// Source is where a flake reference fetches from, as far as a push event
// can tell: a repository on a host, and the branch it follows.
type Source struct {
	// Host is the Git host, lowercase (github.com, gitlab.com, …).
	Host string
	// Repo is the repository path, lowercase (owner/name, or
	// group/subgroup/name on GitLab), without .git.
	Repo string
	// Branch is the branch followed; empty follows the default branch.
	Branch string
	// Pinned is set when the reference names a commit (a rev): no push
	// changes what it builds.
	Pinned bool
}

// Moving reports whether a flake ref can lock to a different revision
// tomorrow: it names no commit (a rev, or a narHash that pins the content)
// and is not a local path. Refs it cannot read (the flake registry, any
// tarball URL) count as moving: a refresh build then compares narHashes
// and pushes nothing when the content is the same.
func Moving(ref string) bool {
	if pathLike.MatchString(ref) || pinParam.MatchString(ref) {
		return false
	}
	if s, ok := Parse(ref); ok {
		return !s.Pinned
	}
	return true
}

// Key is the repository's identity, host/repo.
func (s Source) Key() string { return s.Host + "/" + s.Repo }

var (
	pathLike = regexp.MustCompile(`^(path:|/|\./|\.\./)`)
	pinParam = regexp.MustCompile(`[?&](rev|narHash)=`)
	// commitHash is Nix's revRegex: it takes either case.
	commitHash = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	repoPart   = regexp.MustCompile(`^~?[A-Za-z0-9_.-]+$`)
	// archivePath is a GitHub (or codeload) tarball of a branch:
	// /owner/repo/archive/[refs/heads/]BRANCH.tar.gz
	archivePath = regexp.MustCompile(`^/([^/]+)/([^/]+)/archive/(?:refs/heads/)?(.+?)\.(?:tar\.gz|tgz|zip)$`)
)

// Parse reads the repository and branch out of a flake reference in
// the forms Nix documents for Git hosts (github:, gitlab:, sourcehut:,
// git+https:/git+ssh:, and GitHub archive tarballs). It reports false for
// anything else (paths, the flake registry, arbitrary tarballs): no push
// event can match those.
func Parse(flake string) (Source, bool) {
	scheme, rest, ok := strings.Cut(flake, ":")
	if !ok {
		return Source{}, false
	}
	switch scheme {
	case "github", "gitlab", "sourcehut":
		return parseHostShorthand(scheme, rest)
	case "git+https", "git+http", "git+ssh", "git":
		return parseGitURL(flake)
	case "https", "tarball+https":
		return parseArchiveURL(strings.TrimPrefix(flake, "tarball+"))
	}
	return Source{}, false
}

// parseHostShorthand reads github:owner/repo[/ref-or-rev][?ref=…&rev=…&host=…].
func parseHostShorthand(scheme, rest string) (Source, bool) {
	path, rawQuery, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Source{}, false
	}
	parts := strings.Split(path, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Source{}, false
	}
	owner, err1 := url.PathUnescape(parts[0])
	repo, err2 := url.PathUnescape(parts[1])
	if err1 != nil || err2 != nil || !ValidRepoPath(owner+"/"+repo) {
		return Source{}, false
	}
	host := map[string]string{"github": "github.com", "gitlab": "gitlab.com", "sourcehut": "git.sr.ht"}[scheme]
	if h := q.Get("host"); h != "" {
		host = h
	}
	s := Source{Host: strings.ToLower(host), Repo: strings.ToLower(owner + "/" + repo)}
	if len(parts) == 3 {
		refOrRev, err := url.PathUnescape(parts[2])
		if err != nil || refOrRev == "" {
			return Source{}, false
		}
		if commitHash.MatchString(refOrRev) {
			s.Pinned = true
		} else {
			s.Branch = BranchName(refOrRev)
		}
	}
	if r := q.Get("ref"); r != "" {
		s.Branch = BranchName(r)
	}
	if q.Get("rev") != "" || q.Get("narHash") != "" {
		s.Pinned = true
	}
	return s, true
}

// parseGitURL reads git+https://host/path[.git][?ref=…&rev=…] and the ssh
// forms git+ssh://[user@]host/path.
func parseGitURL(flake string) (Source, bool) {
	u, err := url.Parse(strings.TrimPrefix(flake, "git+"))
	if err != nil || u.Host == "" {
		return Source{}, false
	}
	repo := strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
	if !ValidRepoPath(repo) {
		return Source{}, false
	}
	q := u.Query()
	s := Source{Host: strings.ToLower(u.Hostname()), Repo: strings.ToLower(repo), Branch: BranchName(q.Get("ref"))}
	if q.Get("rev") != "" || q.Get("narHash") != "" {
		s.Pinned = true
	}
	return s, true
}

// parseArchiveURL reads a GitHub archive tarball of a branch. A tarball
// URL ending in a commit hash is pinned.
func parseArchiveURL(flake string) (Source, bool) {
	u, err := url.Parse(flake)
	if err != nil {
		return Source{}, false
	}
	host := strings.ToLower(u.Hostname())
	if host != "github.com" && host != "codeload.github.com" {
		return Source{}, false
	}
	m := archivePath.FindStringSubmatch(u.Path)
	if m == nil || !repoPart.MatchString(m[1]) || !repoPart.MatchString(m[2]) {
		return Source{}, false
	}
	s := Source{Host: "github.com", Repo: strings.ToLower(m[1] + "/" + m[2])}
	if commitHash.MatchString(m[3]) {
		s.Pinned = true
	} else {
		s.Branch = m[3]
	}
	return s, true
}

// ValidRepoPath accepts owner/name and deeper GitLab group paths.
func ValidRepoPath(p string) bool {
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return false
	}
	for _, part := range parts {
		if !repoPart.MatchString(part) || strings.Trim(part, ".~") == "" {
			return false
		}
	}
	return true
}

// BranchName drops the refs/heads/ prefix Git refs may carry.
func BranchName(ref string) string {
	return strings.TrimPrefix(ref, "refs/heads/")
}

// Follows says whether a push to branch of the source's repository can
// change what the source builds. defaultBranch is the repository's default
// branch as the event reports it (empty when the event does not say).
func (s Source) Follows(branch, defaultBranch string) bool {
	if s.Pinned || branch == "" {
		return false
	}
	if s.Branch == "" {
		return defaultBranch != "" && branch == defaultBranch
	}
	return s.Branch == branch
}
