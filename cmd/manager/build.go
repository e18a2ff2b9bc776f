package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// runBuild is the build container: it runs user flake code through Nix and
// is never given the Heroku key. It resolves the flake and, unless it still
// locks to the request's SkipIfRevision, builds every process output into
// the workspace it shares with the push container (runPush), which holds the
// key and never runs Nix. The local builder runs the same two halves.
func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	request := fs.String("request", "", "the build request, as JSON")
	workspace := fs.String("workspace", "/workspace", "directory shared with the push container")
	nixConf := fs.String("nix-conf", "", "extra nix.conf (e.g. access-tokens)")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole build")
	offline := fs.Bool("offline", false, "use no binary cache")
	cache := fs.String("cache", "", "the store's /nix is a build cache (a volume prepare-cache checked): lock it, record GC roots")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("HEROKU_API_KEY") != "" {
		return errors.New("refusing to run Nix with HEROKU_API_KEY in the environment")
	}
	nix := nixbuild.Nix{NixConfFile: *nixConf, Offline: *offline, Timeout: *timeout, Stderr: os.Stderr}
	if *cache != "" {
		unlock, err := nixbuild.LockCache(*cache)
		if err != nil {
			return err
		}
		defer unlock()
		nix.RequireSigs = true
		nix.GCRootsDir = nixbuild.CacheRootsDir(*cache)
	}
	var req artifact.BuildRequest
	if err := json.Unmarshal([]byte(*request), &req); err != nil {
		return fmt.Errorf("parsing --request: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	m, err := nixbuild.Run(ctx, nix, req, *workspace)
	if err != nil {
		return err
	}
	return printJSON(os.Stdout, m)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runPrepareCache is the cache container of a build pod whose resource
// keeps a build cache (spec.build.cache.type Volume): before the build
// container mounts the volume at /nix, it seeds it from the Nix image's
// own /nix or checks what earlier builds left there
// (nixbuild.PrepareCache). It runs in the Nix image and no user code; it
// is never given the Heroku key either.
func runPrepareCache(args []string) error {
	fs := flag.NewFlagSet("prepare-cache", flag.ContinueOnError)
	root := fs.String("root", "/cache/nix", "the cache directory (named nix) on the cache volume")
	record := fs.String("record", "", "where the state of checked paths is kept, out of the build container's reach (default: beside --root)")
	image := fs.String("image-nix", "/nix", "the Nix image's own /nix")
	budget := fs.Int64("budget", 0, "collect garbage above 80% of this many bytes (0: never)")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole step")
	var keys stringList
	fs.Var(&keys, "trusted-public-key", "a key whose signatures make a path trusted, besides nix.conf's (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("HEROKU_API_KEY") != "" {
		return errors.New("refusing to prepare the build cache with HEROKU_API_KEY in the environment")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nix := nixbuild.Nix{TrustedPublicKeys: keys, Timeout: *timeout, Stderr: os.Stderr}
	if *record == "" {
		*record = filepath.Join(filepath.Dir(*root), "herokunix-checked.json")
	}
	rep, err := nixbuild.PrepareCache(ctx, nix, nixbuild.CacheOptions{Dir: *root, ImageDir: *image, Budget: *budget, Record: *record})
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "herokunix: "+rep.String())
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
