package flakeref

import (
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		flake string
		want  Source
		ok    bool
	}{
		{"github:acme/shop", Source{Host: "github.com", Repo: "acme/shop"}, true},
		{"github:Acme/Shop?ref=main", Source{Host: "github.com", Repo: "acme/shop", Branch: "main"}, true},
		{"github:acme/shop/dev", Source{Host: "github.com", Repo: "acme/shop", Branch: "dev"}, true},
		{"github:acme/shop/dev?dir=web", Source{Host: "github.com", Repo: "acme/shop", Branch: "dev"}, true},
		{"github:acme/shop?ref=refs/heads/release", Source{Host: "github.com", Repo: "acme/shop", Branch: "release"}, true},
		{"github:acme/shop/0123456789abcdef0123456789abcdef01234567", Source{Host: "github.com", Repo: "acme/shop", Pinned: true}, true},
		{"github:acme/shop?ref=main&rev=0123456789abcdef0123456789abcdef01234567", Source{Host: "github.com", Repo: "acme/shop", Branch: "main", Pinned: true}, true},
		{"github:acme/shop?host=github.example.com", Source{Host: "github.example.com", Repo: "acme/shop"}, true},
		{"gitlab:acme/shop?ref=main", Source{Host: "gitlab.com", Repo: "acme/shop", Branch: "main"}, true},
		{"gitlab:acme%2Fteam/shop", Source{Host: "gitlab.com", Repo: "acme/team/shop"}, true},
		{"sourcehut:~acme/shop", Source{Host: "git.sr.ht", Repo: "~acme/shop"}, true},
		{"git+https://github.com/acme/shop.git?ref=main", Source{Host: "github.com", Repo: "acme/shop", Branch: "main"}, true},
		{"git+https://gitlab.example.com/group/sub/shop?ref=prod", Source{Host: "gitlab.example.com", Repo: "group/sub/shop", Branch: "prod"}, true},
		{"git+ssh://git@github.com/acme/shop?ref=main", Source{Host: "github.com", Repo: "acme/shop", Branch: "main"}, true},
		{"git+https://github.com/acme/shop?rev=0123456789abcdef0123456789abcdef01234567", Source{Host: "github.com", Repo: "acme/shop", Pinned: true}, true},
		{"https://github.com/acme/shop/archive/main.tar.gz", Source{Host: "github.com", Repo: "acme/shop", Branch: "main"}, true},
		{"https://github.com/acme/shop/archive/refs/heads/feature/x.tar.gz", Source{Host: "github.com", Repo: "acme/shop", Branch: "feature/x"}, true},
		{"https://github.com/acme/shop/archive/0123456789abcdef0123456789abcdef01234567.tar.gz", Source{Host: "github.com", Repo: "acme/shop", Pinned: true}, true},
		{"https://example.com/shop.tar.gz", Source{}, false},
		{"path:/src/shop", Source{}, false},
		{"nixpkgs", Source{}, false},
		{"flake:nixpkgs", Source{}, false},
		{"github:acme", Source{}, false},
		{"github:acme/shop/a/b", Source{}, false},
		{"github:acme/../x", Source{}, false},
		{"git+https://github.com/shop", Source{}, false},
	}
	for _, c := range cases {
		got, ok := Parse(c.flake)
		if ok != c.ok || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", c.flake, got, ok, c.want, c.ok)
		}
	}
}

func TestFollows(t *testing.T) {
	cases := []struct {
		name                  string
		src                   Source
		branch, defaultBranch string
		want                  bool
	}{
		{"the branch it names", Source{Branch: "main"}, "main", "main", true},
		{"another branch", Source{Branch: "main"}, "dev", "main", false},
		{"a ref-less reference follows the default branch", Source{}, "trunk", "trunk", true},
		{"a ref-less reference ignores other branches", Source{}, "dev", "trunk", false},
		{"a ref-less reference matches nothing when the default branch is unknown", Source{}, "main", "", false},
		{"a pinned reference follows nothing", Source{Branch: "main", Pinned: true}, "main", "main", false},
		{"a push that is not to a branch", Source{Branch: "main"}, "", "main", false},
	}
	for _, c := range cases {
		if got := c.src.Follows(c.branch, c.defaultBranch); got != c.want {
			t.Errorf("%s: Follows = %v", c.name, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"github:acme/shop?ref=main", "git+https://h/a/b?ref=x", "https://github.com/a/b/archive/x.tar.gz", "gitlab:a%2Fb/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, flake string) {
		s, ok := Parse(flake)
		if ok && (s.Host == "" || !ValidRepoPath(s.Repo)) {
			t.Errorf("Parse(%q) accepted %+v", flake, s)
		}
	})
}

func TestMoving(t *testing.T) {
	for ref, moving := range map[string]bool{
		"github:acme/shop":                                                              true,
		"github:acme/shop?ref=main":                                                     true,
		"https://example.com/acme/shop/archive/main.tar.gz":                             true,
		"git+https://example.com/shop.git?ref=main":                                     true,
		"github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd":                     false,
		"git+https://example.com/shop.git?rev=9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd": false,
		"path:/src/shop": false,
		"/src/shop":      false,
		// Nix reads a rev in either case; a narHash pins content.
		"github:acme/shop/9F2C1E0AA1B29F2C1E0AA1B29F2C1E0AA1B2ABCD":                            false,
		"https://github.com/acme/shop/archive/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd.tar.gz": false,
		"https://example.com/shop.tar.gz?narHash=sha256-AAAA":                                  false,
		"nixpkgs#hello": true,
	} {
		if got := Moving(ref); got != moving {
			t.Errorf("Moving(%q) = %v, want %v", ref, got, moving)
		}
	}
}
