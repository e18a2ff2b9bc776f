package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
)

// runPush is the push container: the only place the Heroku key is. It
// writes {revision, lockedFlake, images} to --result (the termination
// message file), which the controller reads back. When the registry refuses
// the key it writes an artifact.Failure there instead and exits non-zero,
// so the controller reports a credentials problem, not a failed build.
func runPush(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	workspace := fs.String("workspace", "/workspace", "directory the build container filled")
	app := fs.String("app", "", "Heroku app")
	registry := fs.String("registry", "registry.heroku.com", "registry host")
	insecure := fs.Bool("insecure-registry", false, "talk plain HTTP to the registry (local testing only)")
	result := fs.String("result", "/dev/termination-log", "where to write the result JSON")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole push")
	processes := fs.String("processes", "", "comma-separated process types of the build request; when set, a manifest with any other set is refused")
	maxLayers := fs.Int("max-layers", image.DefaultLayers, fmt.Sprintf("layer budget of every image (1 to %d); an image with more layers is re-layered to fit", image.CeilingLayers))
	reuseFlag := fs.String("reuse-from", "", "type=sha256:<manifest digest> pairs, comma-separated: the images herokunix pushed last, the only ones whose layers are reused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reuseFrom, err := artifact.ParseReuseFrom(*reuseFlag)
	if err != nil {
		return fmt.Errorf("--reuse-from: %w", err)
	}
	if *maxLayers < 1 || *maxLayers > image.CeilingLayers {
		return fmt.Errorf("--max-layers %d: want 1 to %d", *maxLayers, image.CeilingLayers)
	}
	key := os.Getenv("HEROKU_API_KEY")
	if key == "" || *app == "" {
		return errors.New("HEROKU_API_KEY and --app are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := image.PushWorkspace(ctx, *workspace, *registry, *app, image.PushOptions{
		Options:   image.Options{MaxLayers: *maxLayers},
		Remote:    []remote.Option{remote.WithAuth(heroku.RegistryAuth(key)), remote.WithContext(ctx)},
		Insecure:  *insecure,
		Progress:  os.Stderr,
		Processes: processTypes(*processes),
		ReuseFrom: reuseFrom,
	})
	if err != nil {
		if image.IsUnauthorized(err) {
			// A credentials problem, not a broken build: say so in a form
			// the controller reads (the log tail would only be text).
			return errors.Join(err, writeFailure(*result, artifact.FailureUnauthorized, err))
		}
		return err
	}
	b, err := res.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*result, b, 0o644); err != nil {
		return fmt.Errorf("writing result: %w", err)
	}
	return nil
}

// writeFailure writes a typed failure to the termination message file,
// where the controller looks for it when the container fails. The message
// is the registry's answer, which never holds the key.
func writeFailure(path string, kind artifact.FailureKind, cause error) error {
	b, err := (&artifact.Failure{Failure: kind, Message: cause.Error()}).Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing the failure: %w", err)
	}
	return nil
}

// processTypes splits the --processes flag; nil when it is empty.
func processTypes(flag string) []string {
	if flag == "" {
		return nil
	}
	return strings.Split(flag, ",")
}
