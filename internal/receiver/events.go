package receiver

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/herokunix/herokunix/internal/flakeref"
)

// Push is what a push event says, reduced to what matching needs: which
// repository and branch moved. It never says what to build; the controller
// re-resolves the flake reference itself.
type Push struct {
	// Host and Repo identify the repository, lowercase.
	Host, Repo string
	// Branch is the branch pushed to; empty for tags and other refs.
	Branch string
	// DefaultBranch is the repository's default branch, when known.
	DefaultBranch string
	// Deleted is set when the push deleted the branch.
	Deleted bool
}

// Key is the repository's identity, host/repo, as flakeref.Source.Key.
func (p Push) Key() string { return p.Host + "/" + p.Repo }

const zeroCommit = "0000000000000000000000000000000000000000"

// ParseGitHubPush reads a GitHub push event payload.
// https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
func ParseGitHubPush(body []byte) (Push, error) {
	var ev struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			FullName      string `json:"full_name"`
			HTMLURL       string `json:"html_url"`
			DefaultBranch string `json:"default_branch"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return Push{}, fmt.Errorf("decoding GitHub push event: %w", err)
	}
	host, err := hostOf(ev.Repository.HTMLURL, "github.com")
	if err != nil {
		return Push{}, err
	}
	return newPush(host, ev.Repository.FullName, ev.Ref, ev.Repository.DefaultBranch, ev.Deleted || ev.After == zeroCommit)
}

// ParseGitLabPush reads a GitLab push hook payload.
// https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events
func ParseGitLabPush(body []byte) (Push, error) {
	var ev struct {
		Ref     string `json:"ref"`
		After   string `json:"after"`
		Project struct {
			PathWithNamespace string `json:"path_with_namespace"`
			WebURL            string `json:"web_url"`
			DefaultBranch     string `json:"default_branch"`
		} `json:"project"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return Push{}, fmt.Errorf("decoding GitLab push event: %w", err)
	}
	host, err := hostOf(ev.Project.WebURL, "gitlab.com")
	if err != nil {
		return Push{}, err
	}
	return newPush(host, ev.Project.PathWithNamespace, ev.Ref, ev.Project.DefaultBranch, ev.After == zeroCommit)
}

// GenericPush is the body of the generic form: the repository as a URL
// (https://host/owner/repo) and the branch pushed to.
type GenericPush struct {
	Repository    string `json:"repository"`
	Branch        string `json:"branch"`
	DefaultBranch string `json:"defaultBranch,omitempty"`
}

// ParseGenericPush reads the generic form's body.
func ParseGenericPush(body []byte) (Push, error) {
	var ev GenericPush
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Push{}, fmt.Errorf("decoding generic push event: %w", err)
	}
	u, err := url.Parse(ev.Repository)
	if err != nil || u.Host == "" {
		return Push{}, fmt.Errorf("repository %q is not a URL like https://github.com/owner/repo", ev.Repository)
	}
	return newPush(u.Hostname(), strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git"), "refs/heads/"+flakeref.BranchName(ev.Branch), ev.DefaultBranch, false)
}

func newPush(host, repo, ref, defaultBranch string, deleted bool) (Push, error) {
	if !flakeref.ValidRepoPath(repo) {
		return Push{}, fmt.Errorf("event names no repository (%q)", repo)
	}
	p := Push{Host: strings.ToLower(host), Repo: strings.ToLower(repo), DefaultBranch: defaultBranch, Deleted: deleted}
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && b != "" {
		p.Branch = b
	}
	return p, nil
}

// hostOf is the host of a repository's web URL, or def when absent.
func hostOf(webURL, def string) (string, error) {
	if webURL == "" {
		return def, nil
	}
	u, err := url.Parse(webURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("repository URL %q has no host", webURL)
	}
	return u.Hostname(), nil
}
