package receiver

import (
	"testing"

	"github.com/herokunix/herokunix/internal/flakeref"
)

// FuzzParsePush: every sender's payload parser, on any bytes, either
// refuses or yields a push naming a valid repository.
func FuzzParsePush(f *testing.F) {
	f.Add([]byte(`{"ref":"refs/heads/main","after":"a","repository":{"full_name":"acme/shop","html_url":"https://github.com/acme/shop","default_branch":"main"}}`))
	f.Add([]byte(`{"ref":"refs/heads/main","project":{"path_with_namespace":"g/s/r","web_url":"https://gitlab.com/g/s/r"}}`))
	f.Add([]byte(`{"repository":"https://github.com/acme/shop","branch":"main"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte) (Push, error){ParseGitHubPush, ParseGitLabPush, ParseGenericPush} {
			p, err := parse(body)
			if err == nil && (p.Host == "" || !flakeref.ValidRepoPath(p.Repo)) {
				t.Errorf("accepted %q as %+v", body, p)
			}
		}
	})
}
