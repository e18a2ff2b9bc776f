package nixbuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/herokunix/herokunix/internal/artifact"
)

// Process is one Heroku process type to build.
type Process struct {
	// Attribute is the flake attribute to build, e.g. "packages.x86_64-linux.web".
	Attribute string
	// Command is the process's command, recorded in the manifest. Closure
	// mode needs one; without it the package's only program in bin/ is used.
	Command []string
	// Kind overrides detection when set.
	Kind artifact.Kind
}

// Request is a flake and the processes to build from it.
type Request struct {
	Flake     string
	Processes map[string]Process
}

// flakeMetadata is the part of `nix flake metadata --json` we use.
type flakeMetadata struct {
	// URL is the locked flake ref in Nix 2.8 and later.
	URL string `json:"url"`
	// LockedURL is what newer Nix also prints for the locked ref.
	LockedURL string `json:"lockedUrl"`
	Locked    struct {
		Rev string `json:"rev"`
	} `json:"locked"`
}

// Resolve locks flakeRef with `nix flake metadata --json` and returns the
// locked ref (to build from) and, for version-controlled sources, the revision.
func Resolve(ctx context.Context, opts Options, flakeRef string) (lockedURL, rev string, err error) {
	if err := ValidateFlakeRef(flakeRef); err != nil {
		return "", "", err
	}
	ctx, cancel := opts.withTimeout(ctx)
	defer cancel()
	return opts.resolve(ctx, flakeRef)
}

func (o Options) resolve(ctx context.Context, flakeRef string) (string, string, error) {
	out, err := o.nix(ctx, "nix flake metadata", "flake", "metadata", "--json", flakeRef)
	if err != nil {
		return "", "", err
	}
	var md flakeMetadata
	if err := json.Unmarshal(out, &md); err != nil {
		return "", "", fmt.Errorf("parsing nix flake metadata output: %w", err)
	}
	locked := md.LockedURL
	if locked == "" {
		locked = md.URL
	}
	if err := ValidateFlakeRef(locked); err != nil {
		return "", "", fmt.Errorf("nix flake metadata returned an unusable locked ref: %w", err)
	}
	return locked, md.Locked.Rev, nil
}

// Run resolves req.Flake, builds every process's attribute from the locked
// ref, exports each output into workspace (created if missing) in the form
// its kind needs, and writes the manifest there.
//
// Request validation errors come back before Nix runs. A Nix failure is a
// *NixError; a timeout or cancellation wraps the context's error.
func Run(ctx context.Context, opts Options, req Request, workspace string) (*artifact.Manifest, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	ws, err := filepath.Abs(workspace)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, fmt.Errorf("creating workspace: %w", err)
	}
	ctx, cancel := opts.withTimeout(ctx)
	defer cancel()

	locked, rev, err := opts.resolve(ctx, req.Flake)
	if err != nil {
		return nil, err
	}
	m := &artifact.Manifest{
		Revision:    rev,
		LockedFlake: locked,
		Processes:   make(map[string]artifact.ProcessOutput, len(req.Processes)),
	}
	// Build each distinct attribute once, in a stable order.
	names := make([]string, 0, len(req.Processes))
	for name := range req.Processes {
		names = append(names, name)
	}
	sort.Strings(names)
	built := map[string]string{}
	for _, name := range names {
		p := req.Processes[name]
		out, ok := built[p.Attribute]
		if !ok {
			out, err = opts.build(ctx, locked, p.Attribute)
			if err != nil {
				return nil, fmt.Errorf("process %q: %w", name, err)
			}
			built[p.Attribute] = out
		}
		po, err := opts.export(ctx, ws, name, p, out)
		if err != nil {
			return nil, fmt.Errorf("process %q (%s): %w", name, out, err)
		}
		m.Processes[name] = *po
	}
	if err := artifact.WriteManifest(ws, m); err != nil {
		return nil, err
	}
	return m, nil
}

func validateRequest(req Request) error {
	if err := ValidateFlakeRef(req.Flake); err != nil {
		return err
	}
	if len(req.Processes) == 0 {
		return errors.New("no processes to build")
	}
	for name, p := range req.Processes {
		if err := validateProcessName(name); err != nil {
			return err
		}
		if err := ValidateAttribute(p.Attribute); err != nil {
			return fmt.Errorf("process %q: %w", name, err)
		}
		switch p.Kind {
		case "", artifact.KindDockerArchive, artifact.KindNix2Container, artifact.KindClosure:
		default:
			return fmt.Errorf("process %q: unknown kind %q", name, p.Kind)
		}
	}
	return nil
}

// buildResult is one entry of `nix build --json`.
type buildResult struct {
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
}

// build builds locked#attr and returns its output path ("out", or the only
// output if it has another name).
func (o Options) build(ctx context.Context, locked, attr string) (string, error) {
	installable := locked + "#" + attr
	out, err := o.nix(ctx, "nix build "+installable,
		"build", "--json", "--no-link", "--print-build-logs", installable)
	if err != nil {
		return "", err
	}
	var results []buildResult
	if err := json.Unmarshal(out, &results); err != nil {
		return "", fmt.Errorf("parsing nix build output: %w", err)
	}
	if len(results) != 1 {
		return "", fmt.Errorf("nix build printed %d results for one attribute", len(results))
	}
	outs := results[0].Outputs
	path, ok := outs["out"]
	if !ok {
		if len(outs) != 1 {
			return "", fmt.Errorf("%s has %d outputs and none is called out", attr, len(outs))
		}
		for _, p := range outs {
			path = p
		}
	}
	if !artifact.IsStorePath(path) {
		return "", fmt.Errorf("nix build returned %q, which is not a store path", path)
	}
	return path, nil
}
