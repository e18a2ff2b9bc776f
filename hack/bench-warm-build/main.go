// Command bench-warm-build measures what spec.build.cache (type Volume)
// saves: a fixture flake shaped like a Go or Node service, whose app
// needs a toolchain of many derivations (in the binary cache) and its
// vendored dependencies (a fixed-output derivation, as buildGoModule's
// goModules or buildNpmPackage's npmDeps: no public cache has them, so a
// cold build makes them), is built cold (an empty cache volume), then
// again after one source file of the app changed, on the same volume. Both builds run what a build Job's pod runs with a
// cache: `manager prepare-cache` (the cache step) and `manager build
// --cache /nix` (the build container) with the volume at /nix.
//
// Offline and without a cluster: the binary cache is a directory written
// by `nix copy` (signed with a key made for the run) and served over HTTP
// by this process, standing in for cache.nixos.org; its key is the only
// trusted one. The volume is a directory bound over /nix in private mount
// and PID namespaces, as a container has them (the host's /nix is
// untouched), so it needs root, as Nix in a build pod runs. The Nix image's /nix is an empty store, as
// Debian's Nix keeps nix itself outside /nix.
//
// It prints the figures and one machine-readable last line:
//
//	bench-warm-build: paths=151 closure_bytes=… cold_s=… warm_s=… time_ratio=… fetched_bytes_ratio=… first_rebuild_s=…
//
// "warm" is a rebuild on a cache the previous rebuild left; the first
// rebuild after the cold one is reported besides: it hashes every path
// the cold build left, once (see docs/cache.md).
//
//	go run ./hack/bench-warm-build [-deps 150] [-kb 4096] [-vendor-files 4000] [-vendor-kb 8]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// inNamespace is the argument that makes this command the helper that
// binds a directory over /nix in its own mount namespace and runs a
// command there.
const inNamespace = "__in-nix-namespace"

func main() {
	if len(os.Args) > 2 && os.Args[1] == inNamespace {
		log.Fatal(runInNamespace(os.Args[2], os.Args[3:]))
	}
	deps := flag.Int("deps", 150, "derivations in the toolchain the app builds with")
	kb := flag.Int("kb", 4096, "size of each toolchain derivation's output, in KiB")
	vendorFiles := flag.Int("vendor-files", 4000, "files in the app's vendored dependencies (a fixed-output derivation no binary cache has)")
	vendorKB := flag.Int("vendor-kb", 8, "size of each vendored file, in KiB")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	if err := run(fixture{deps: *deps, kb: *kb, vendorFiles: *vendorFiles, vendorKB: *vendorKB}, *keep); err != nil {
		log.Fatal(err)
	}
}

// runInNamespace runs in private mount and PID namespaces (see
// nixCommand), as a container's first process: it binds dir over /nix,
// mounts a /proc of its own and executes argv there.
func runInNamespace(dir string, argv []string) error {
	if err := syscall.Mount(dir, "/nix", "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s over /nix: %w", dir, err)
	}
	// Nix's garbage collector looks for roots in every process's /proc
	// entries; in a pod it sees the pod's processes only.
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

// nixCommand runs argv with dir as /nix, in mount and PID namespaces of
// its own, as a container would (Go makes the new namespace's mounts
// private, so nothing reaches the host's /nix or /proc).
func nixCommand(dir string, env []string, argv ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{inNamespace, dir}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Cloneflags: syscall.CLONE_NEWPID}
	cmd.Env = env
	return cmd
}

// flakeTemplate is the fixture: deps toolchain derivations, each with a
// blob of random bytes and referring to the one before it and the one at
// half its index (a deep graph, like a compiler's closure); vendored
// dependencies of many small files, content-addressed by their hash; the
// app builds with both and keeps a reference to the toolchain's first
// derivation only. Built with the host's tools, sandbox off.
const flakeTemplate = `{
  outputs = { self }:
    let
      system = "x86_64-linux";
      n = %d;
      bytes = %d;
      vendorFiles = %d;
      vendorFileBytes = %d;
      mkDep = i: builtins.derivation {
        name = "bench-toolchain-${toString i}";
        inherit system;
        builder = "/bin/sh";
        refs = if i == 0 then [ ] else [ (builtins.elemAt deps (i - 1)) (builtins.elemAt deps (i / 2)) ];
        args = [ "-c" "/usr/bin/mkdir -p $out/lib && /usr/bin/head -c ${toString bytes} /dev/urandom > $out/lib/blob && echo $refs > $out/lib/refs" ];
      };
      deps = builtins.genList mkDep n;
      toolchain = builtins.elemAt deps (n - 1);
      vendor = builtins.derivation {
        name = "bench-app-vendor";
        inherit system;
        builder = "/bin/sh";
        outputHashMode = "recursive";
        outputHashAlgo = "sha256";
        outputHash = "%s";
        args = [ "-c" ''
          body=$(/usr/bin/head -c ${toString vendorFileBytes} /dev/zero | /usr/bin/tr '\0' 'v')
          /usr/bin/mkdir -p $out
          i=0
          while [ $i -lt ${toString vendorFiles} ]; do
            d=$out/module-$((i / 100))
            [ -d $d ] || /usr/bin/mkdir -p $d
            printf '// file %%d\n%%s\n' $i "$body" > $d/file-$i.go
            i=$((i + 1))
          done
        '' ];
      };
      app = builtins.derivation {
        name = "bench-app";
        inherit system toolchain vendor;
        builder = "/bin/sh";
        src = ./src;
        runtime = builtins.elemAt deps 0;
        args = [ "-c" "/usr/bin/cat $toolchain/lib/refs > /dev/null && /usr/bin/ls $vendor > /dev/null && /usr/bin/mkdir -p $out/bin && /usr/bin/cat $src/main.txt > $out/bin/app && echo $runtime > $out/runtime" ];
      };
    in
    {
      packages.${system} = { default = app; inherit app toolchain vendor; };
    };
}
`

// counter counts the bytes the binary cache serves.
type counter struct{ bytes, requests atomic.Int64 }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (c *counter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		h.ServeHTTP(countingWriter{w, &c.bytes}, r)
	})
}

// fixture sizes the flake flakeTemplate writes.
type fixture struct{ deps, kb, vendorFiles, vendorKB int }

func (f fixture) flake(vendorHash string) []byte {
	return fmt.Appendf(nil, flakeTemplate, f.deps, f.kb<<10, f.vendorFiles, f.vendorKB<<10, vendorHash)
}

// gotHash is the hash Nix reports a fixed-output derivation's output has.
var gotHash = regexp.MustCompile(`got:\s+(sha256[-:]\S+)`)

func run(fx fixture, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("bench-warm-build binds a store over /nix in a mount namespace: run it as root")
	}
	tmp, err := os.MkdirTemp("", "bench-warm-build-")
	if err != nil {
		return err
	}
	if !keep {
		defer func() { _ = nixbuild.RemoveAllWritable(tmp) }()
	}
	dirs := map[string]string{}
	for _, d := range []string{"publisher/nix", "image", "volume/nix", "binary-cache", "flake/src", "bin"} {
		dirs[d] = filepath.Join(tmp, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			return err
		}
	}
	// Substituters come from the build request only.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "NIX_CONFIG=substituters =\n"}
	nixArgs := []string{"nix", "--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "false"}
	var lastStderr string
	do := func(cmd *exec.Cmd) ([]byte, error) {
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		lastStderr = stderr.String()
		if err != nil {
			return nil, fmt.Errorf("%q: %w\n%s", cmd.Args, err, lastLines(stderr.String(), 20))
		}
		return out, nil
	}

	log.Printf("building the manager")
	manager := filepath.Join(dirs["bin"], "manager")
	if _, err := do(exec.Command("go", "build", "-o", manager, "./cmd/manager")); err != nil {
		return err
	}

	flake := filepath.Join(tmp, "flake")
	// The vendored dependencies' hash is found as a developer finds a
	// vendorHash: build with a wrong one, take the one Nix got.
	if err := os.WriteFile(filepath.Join(flake, "flake.nix"), fx.flake("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), 0o644); err != nil {
		return err
	}
	version := 1
	writeSource := func(v int) error {
		return os.WriteFile(filepath.Join(flake, "src", "main.txt"), fmt.Appendf(nil, "app source, version %d\n", v), 0o644)
	}
	if err := writeSource(version); err != nil {
		return err
	}
	ref := "path:" + flake

	// The publisher (nixpkgs' CI, say) builds the toolchain in a store of
	// its own and uploads it, signed, to the binary cache.
	log.Printf("publishing a toolchain of %d derivations (%d KiB each) to the binary cache", fx.deps, fx.kb)
	keyFile := filepath.Join(tmp, "cache-key")
	secret, err := do(exec.Command("nix", "--extra-experimental-features", "nix-command", "key", "generate-secret", "--key-name", "bench-cache-1"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		return err
	}
	pubCmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "key", "convert-secret-to-public")
	pubCmd.Stdin = bytes.NewReader(secret)
	pub, err := do(pubCmd)
	if err != nil {
		return err
	}
	publicKey := strings.TrimSpace(string(pub))
	pubDir := dirs["publisher/nix"]
	if _, err := do(nixCommand(pubDir, env, append(nixArgs, "build", "--no-link", ref+"#vendor")...)); err == nil {
		return errors.New("the vendored dependencies built with a wrong hash")
	}
	m := gotHash.FindStringSubmatch(lastStderr)
	if m == nil {
		return fmt.Errorf("nix did not say the vendored dependencies' hash:\n%s", lastLines(lastStderr, 20))
	}
	if err := os.WriteFile(filepath.Join(flake, "flake.nix"), fx.flake(m[1]), 0o644); err != nil {
		return err
	}
	if _, err := do(nixCommand(pubDir, env, append(nixArgs, "build", "--no-link", ref+"#toolchain")...)); err != nil {
		return err
	}
	cacheURL := "file://" + dirs["binary-cache"] + "?compression=zstd&secret-key=" + keyFile
	if _, err := do(nixCommand(pubDir, env, append(nixArgs, "copy", "--to", cacheURL, ref+"#toolchain")...)); err != nil {
		return err
	}

	// The Nix image's /nix: an empty store.
	if _, err := do(exec.Command("nix-store", "--store", dirs["image"], "--init")); err != nil {
		return err
	}

	var served counter
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: served.wrap(http.FileServer(http.Dir(dirs["binary-cache"]))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	req, err := json.Marshal(artifact.BuildRequest{
		Flake:             ref,
		Processes:         map[string]artifact.BuildProcess{"web": {Attribute: "packages.x86_64-linux.app", Command: []string{"bin/app"}}},
		Substituters:      []string{"http://" + ln.Addr().String()},
		TrustedPublicKeys: []string{publicKey},
	})
	if err != nil {
		return err
	}
	volume := dirs["volume/nix"]
	// One build as a Job's pod runs it: the cache step, then the build
	// container with the volume at /nix.
	type phase struct {
		name          string
		total, prep   time.Duration
		fetched       int64
		prepareReport string
	}
	build := func(name string) (phase, error) {
		served.bytes.Store(0)
		ws := filepath.Join(tmp, "workspace-"+name)
		start := time.Now()
		// The record beside the store is what the build container, which
		// mounts the volume's nix directory only, cannot reach in a pod.
		// Each pod has a HOME of its own (Nix keeps its fetcher and
		// evaluation caches there), so the warm build finds none.
		podEnv := append(slices.Clone(env), "HOME="+filepath.Join(tmp, "home-"+name))
		// The cache step sees the image's store at /nix, the volume
		// elsewhere.
		prep := nixCommand(filepath.Join(dirs["image"], "nix"), podEnv, manager, "prepare-cache", "--root", volume, "--image-nix", "/nix",
			"--budget", fmt.Sprint(int64(10)<<30), "--trusted-public-key", publicKey)
		if _, err := do(prep); err != nil {
			return phase{}, err
		}
		p := phase{name: name, prep: time.Since(start), prepareReport: strings.TrimPrefix(lastLines(lastStderr, 1), "herokunix: ")}
		if _, err := do(nixCommand(volume, podEnv, manager, "build", "--workspace", ws, "--request", string(req), "--cache", "/nix")); err != nil {
			return phase{}, err
		}
		p.total = time.Since(start)
		m, err := artifact.ReadManifest(ws)
		if err != nil {
			return phase{}, fmt.Errorf("%s build left no manifest: %w", name, err)
		}
		got, err := os.ReadFile(filepath.Join(ws, artifact.StoreRoot, m.Processes["web"].OutPath, "bin", "app"))
		if err != nil || !bytes.Contains(got, fmt.Appendf(nil, "version %d", version)) {
			return phase{}, fmt.Errorf("the %s build did not build the current source: %q, %v", name, got, err)
		}
		p.fetched = served.bytes.Load()
		log.Printf("%s build: %.2fs (cache step %.2fs: %s), fetched %d bytes", name, p.total.Seconds(), p.prep.Seconds(), p.prepareReport, p.fetched)
		return p, nil
	}

	log.Printf("cold build")
	cold, err := build("cold")
	if err != nil {
		return err
	}
	closure, err := do(nixCommand(volume, env, append(nixArgs, "path-info", "--recursive", "--json", ref+"#toolchain")...))
	if err != nil {
		return err
	}
	paths, err := nixbuild.ParsePathInfo(closure)
	if err != nil {
		return err
	}
	var closureBytes int64
	for _, p := range paths {
		closureBytes += p.NarSize
	}
	// The first rebuild hashes every path the cold build left (user code
	// ran beside them); later ones hash only what changed since.
	version = 2
	if err := writeSource(version); err != nil {
		return err
	}
	log.Printf("first rebuild after one source change")
	first, err := build("first-rebuild")
	if err != nil {
		return err
	}
	version = 3
	if err := writeSource(version); err != nil {
		return err
	}
	log.Printf("next rebuild after another source change")
	warm, err := build("warm")
	if err != nil {
		return err
	}

	ratio := func(p phase) (float64, float64) {
		return p.total.Seconds() / cold.total.Seconds(), float64(p.fetched) / float64(closureBytes)
	}
	firstTime, firstFetched := ratio(first)
	warmTime, warmFetched := ratio(warm)
	fmt.Printf("toolchain closure: %d paths, %d bytes (NAR)\n", len(paths), closureBytes)
	for _, p := range []phase{cold, first, warm} {
		fmt.Printf("%-14s %6.2fs (cache step %5.2fs), fetched %10d bytes  [%s]\n", p.name, p.total.Seconds(), p.prep.Seconds(), p.fetched, p.prepareReport)
	}
	fmt.Printf("targets (issue 13), warm rebuild: time <= 0.2x cold: %s (%.3f); fetch <= 5%% of the closure: %s (%.4f)\n",
		verdict(warmTime <= 0.2), warmTime, verdict(warmFetched <= 0.05), warmFetched)
	fmt.Printf("first rebuild after the cold build (hashes the cold build's paths once): time %.3f of cold, fetch %.4f of the closure\n",
		firstTime, firstFetched)
	fmt.Printf("bench-warm-build: paths=%d closure_bytes=%d cold_s=%.2f warm_s=%.2f time_ratio=%.3f fetched_bytes_ratio=%.4f first_rebuild_s=%.2f first_time_ratio=%.3f first_fetched_bytes_ratio=%.4f cold_fetched_bytes=%d warm_fetched_bytes=%d\n",
		len(paths)+1, closureBytes, cold.total.Seconds(), warm.total.Seconds(), warmTime, warmFetched,
		first.total.Seconds(), firstTime, firstFetched, cold.fetched, warm.fetched)
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
