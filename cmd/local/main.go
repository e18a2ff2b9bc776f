// Command local is what `make run` runs: a developer tool, not part of the
// image. It builds the production manager (cmd/manager) and runs it:
//
//   - with no cluster configured (no KUBECONFIG, no ~/.kube/config, not in a
//     pod), against the embedded local default (internal/localenv): a local
//     control plane, the Heroku stand-in and its registry on loopback, the
//     local builder with this machine's Nix. It applies config/samples,
//     prints the resource as it goes Ready, runs the released web image, and
//     exits (or keeps running with --keep-running);
//   - with a cluster configured, against that cluster, as the manager alone.
//
// Usage:
//
//	local [--local=auto|always|never] [--keep-running] [manager flags]
//
// Every argument but its own two flags goes to the manager unchanged.
//
// The local default is built from test stand-ins, which is why it lives here
// and not in cmd/manager: the shipped binary links no test double.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/herokunix/herokunix/internal/localenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "local: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f, managerArgs, err := splitArgs(args)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{TimeEncoder: zapcore.ISO8601TimeEncoder})))
	log := ctrl.Log.WithName("local")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := os.Getwd() // the herokunix checkout: make runs from it
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "herokunix-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The manager builds while the local control plane starts.
	bin := filepath.Join(dir, "manager")
	built := make(chan error, 1)
	go func() { built <- buildManager(ctx, root, bin) }()

	if !useLocal(f.local) {
		if err := <-built; err != nil {
			return err
		}
		log.Info("a cluster is configured: running the manager against it")
		manager, err := startManager(ctx, bin, managerArgs, nil)
		if err != nil {
			return err
		}
		return waitManager(manager)
	}
	log.Info("no cluster configured: starting the embedded local default")
	env, err := localenv.Start(ctx, localenv.Options{Log: log, RepoRoot: root})
	if err != nil {
		err = fmt.Errorf("starting the local default: %w", err)
	} else {
		defer env.Stop()
	}
	if err := errors.Join(err, <-built); err != nil {
		return err
	}

	// The local default's flags come last, so they win over the same flags in
	// managerArgs: the local default has no other Heroku or registry.
	managerCtx, stopManager := context.WithCancel(ctx)
	defer stopManager()
	manager, err := startManager(managerCtx, bin, append(managerArgs, localManagerFlags(env)...), []string{"KUBECONFIG=" + env.Kubeconfig})
	if err != nil {
		return err
	}
	exited := make(chan error, 1)
	deployCtx, stopDeploy := context.WithCancel(ctx)
	defer stopDeploy()
	go func() {
		exited <- waitManager(manager)
		stopDeploy() // a manager that is gone will not make the sample Ready
	}()

	if err := env.DeploySample(deployCtx, os.Stdout); err != nil {
		stopManager()
		return errors.Join(err, <-exited)
	}
	if f.keepRunning {
		log.Info("the sample is Ready; the manager keeps running until interrupted", "kubeconfig", env.Kubeconfig)
	} else {
		stopManager()
	}
	return <-exited
}

// localManagerFlags point the manager at the local default: builds in its
// own process with this machine's Nix (the fixture flake needs no binary
// cache), the Heroku stand-in and its plain-HTTP registry on loopback, and
// no fixed ports, so nothing already listening gets in the way.
func localManagerFlags(env *localenv.Env) []string {
	return []string{
		"--builder=local",
		"--nix-offline",
		"--heroku-api-url=" + env.HerokuAPIURL,
		"--heroku-registry=" + env.RegistryHost,
		"--insecure-registry",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
	}
}

// useLocal decides whether to start the embedded local default.
func useLocal(mode string) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("KUBECONFIG") != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return false
	}
	home, _ := os.UserHomeDir()
	_, err := os.Stat(filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName))
	return errors.Is(err, os.ErrNotExist)
}

// buildManager builds cmd/manager from the checkout at root as bin, so
// that what runs is the production binary, flags and all.
func buildManager(ctx context.Context, root, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building cmd/manager: %w", err)
	}
	return nil
}

// startManager starts the manager with args and extra environment. It runs
// in its own process group, so a Ctrl-C in the terminal reaches this
// process only, which then interrupts the manager once (its signal handler
// exits at once on a second signal) and waits for its graceful shutdown.
func startManager(ctx context.Context, bin string, args, env []string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute // the manager allows itself 30s to shut down
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	return cmd, nil
}

// waitManager waits for a manager startManager started to exit.
func waitManager(cmd *exec.Cmd) error {
	err := cmd.Wait()
	if cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil // Wait reports the context's end after our interrupt, even on a clean exit
	}
	if err != nil {
		return fmt.Errorf("the manager: %w", err)
	}
	return nil
}
