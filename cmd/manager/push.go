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

	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
)

// runPush is the push container: the only place the Heroku key is. It
// writes {revision, lockedFlake, images} to --result (the termination
// message file), which the controller reads back.
func runPush(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	workspace := fs.String("workspace", "/workspace", "directory the build container filled")
	app := fs.String("app", "", "Heroku app")
	registry := fs.String("registry", "registry.heroku.com", "registry host")
	insecure := fs.Bool("insecure-registry", false, "talk plain HTTP to the registry (local testing only)")
	result := fs.String("result", "/dev/termination-log", "where to write the result JSON")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole push")
	processes := fs.String("processes", "", "comma-separated process types of the build request; when set, a manifest with any other set is refused")
	if err := fs.Parse(args); err != nil {
		return err
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
		Remote:    []remote.Option{remote.WithAuth(heroku.RegistryAuth(key)), remote.WithContext(ctx)},
		Insecure:  *insecure,
		Progress:  os.Stderr,
		Processes: processTypes(*processes),
	})
	if err != nil {
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

// processTypes splits the --processes flag; nil when it is empty.
func processTypes(flag string) []string {
	if flag == "" {
		return nil
	}
	return strings.Split(flag, ",")
}
