package e2e_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// repo is the repository's root, seen from this package's directory.
const repo = "../../.."

// composeFile is the part of docker-compose.yml the tests run.
type composeFile struct {
	Services map[string]struct {
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Entrypoint  []string          `yaml:"entrypoint"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// TestDeployFilesRunAsShipped runs what docker-compose.yml and
// deploy/kubernetes/ describe, without Docker or Kubernetes: the compose init
// SQL on a fresh cluster, then walhook's command line, environment and
// mounted configuration from the compose file (service addresses replaced by
// 127.0.0.1 ones), as the least-privilege role: check passes, run delivers,
// the image's health check passes, and the application keeps inserting,
// updating and altering its table. Then `walhook check` on the Kubernetes
// ConfigMap's configuration with the Deployment's environment.
func TestDeployFilesRunAsShipped(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{})
	ctx := t.Context()
	if _, err := c.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	superuser, err := pgx.Connect(ctx, c.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer superuser.Close(context.Background())
	initDir := filepath.Join(repo, "deploy/compose/initdb")
	entries, err := os.ReadDir(initDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries { // in name order, as the postgres image runs them
		path := filepath.Join(initDir, e.Name())
		switch filepath.Ext(e.Name()) {
		case ".sql":
			sql, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := superuser.Exec(ctx, string(sql)); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
		case ".sh":
			sh := exec.CommandContext(ctx, "sh", path)
			sh.Env = append(os.Environ(), "PATH="+c.BinDir()+":"+os.Getenv("PATH"), "PGHOST=127.0.0.1",
				fmt.Sprintf("PGPORT=%d", c.Port()), "POSTGRES_USER=postgres", "POSTGRES_DB=app", "WALHOOK_DB_PASSWORD=walhook")
			if out, err := sh.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", e.Name(), err, out)
			}
		}
	}

	var compose composeFile
	readYAML(t, filepath.Join(repo, "docker-compose.yml"), &compose)
	svc := compose.Services["walhook"]
	rcv := testenv.StartReceiver(t, nil)
	adminAddr := freeAddr(t)
	// The compose network's names, as this host reaches the same things.
	hosts := strings.NewReplacer(
		"@postgres:5432/", fmt.Sprintf("@127.0.0.1:%d/", c.Port()),
		"http://receiver:8080", rcv.URL,
		"127.0.0.1:9187", adminAddr)
	env := os.Environ()
	var composeSecret string
	for k, v := range svc.Environment {
		v = hosts.Replace(composeInterpolate(v))
		if k == "WALHOOK_ADMIN_LISTEN" {
			v = adminAddr // ":9187" would take the port on every interface of this host
		}
		if k == "CRM_WEBHOOK_SECRET" {
			composeSecret = v
		}
		env = append(env, k+"="+v)
	}
	args := mountedPaths(t, svc.Command, svc.Volumes)
	if len(args) < 3 || args[0] != "run" || args[1] != "-config" {
		t.Fatalf("compose walhook command = %q, want run -config FILE", svc.Command)
	}

	out, code := runWith(t, env, 60*time.Second, "check", "-config", args[2])
	if code != 0 || strings.Contains(out, "warn ") || strings.Contains(out, "FAIL ") {
		t.Fatalf("walhook check on the compose set-up (exit %d) should pass without warnings:\n%s", code, out)
	}
	p := startWith(t, env, args...)
	app := connectAs(t, c, "app")
	waitActive(t, superuser)
	health := svc.Healthcheck.Test
	if len(health) < 3 || health[0] != "CMD" || !strings.HasSuffix(health[1], "/walhook") {
		t.Fatalf("compose walhook healthcheck = %q, want the binary itself", health)
	}
	eventually(t, 60*time.Second, "the compose health check passes", func() (bool, string) {
		out, code := runWith(t, env, 60*time.Second, strings.Fields(hosts.Replace(strings.Join(health[2:], " ")))...)
		return code == 0, out
	})

	for _, sql := range []string{
		"INSERT INTO users (email, name, password_hash) VALUES ('ada@example.com', 'Ada', 'never sent')",
		"UPDATE users SET name = 'Ada L.' WHERE email = 'ada@example.com'",
		"ALTER TABLE users ADD COLUMN nickname text", // the application's next migration
		"INSERT INTO users (email, nickname) VALUES ('bob@example.com', 'bobby')",
		"DELETE FROM users WHERE email = 'ada@example.com'",
	} {
		if _, err := app.Exec(ctx, sql); err != nil {
			t.Fatalf("the application, after walhook attached: %s: %v", sql, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := rcv.WaitFor(wctx, func(r []testenv.Request) bool { return len(r) >= 4 }); err != nil {
		t.Fatalf("deliveries as the least-privilege role: %v\n%s", err, tail(p.out.String(), 4000))
	}
	verifier, err := signature.NewVerifier(composeSecret)
	if err != nil {
		t.Fatal(err)
	}
	var ada []string // one user's events arrive in commit order; bob's may come between
	nickname := false
	for _, r := range rcv.Requests() {
		body := string(r.Body)
		if err := verifier.Verify(r.Header, r.Body); err != nil {
			t.Errorf("request %s: %v", r.ID(), err)
		}
		if strings.Contains(body, "never sent") {
			t.Errorf("request %s carries password_hash: %s", r.ID(), body)
		}
		if strings.Contains(body, "ada@example.com") {
			ada = append(ada, regexp.MustCompile(`"type":"([a-z.]+)"`).FindStringSubmatch(body)[1])
		}
		nickname = nickname || strings.Contains(body, `"nickname":"bobby"`)
	}
	if got := strings.Join(ada, " "); got != "user.created user.updated user.deleted" {
		t.Errorf("delivered for ada: %s", got)
	}
	if !nickname {
		t.Error("the column the application added after walhook attached is not delivered")
	}

	// The compose writer's loop, as the application: a user created, renamed
	// and (one turn later) deleted every few seconds.
	writer := compose.Services["writer"]
	if len(writer.Entrypoint) != 3 || writer.Entrypoint[0] != "sh" {
		t.Fatalf("compose writer entrypoint = %q, want sh -c SCRIPT", writer.Entrypoint)
	}
	loop := exec.Command("sh", "-c", composeInterpolate(writer.Entrypoint[2]))
	loop.Env = append(os.Environ(), "PATH="+c.BinDir()+":"+os.Getenv("PATH"), fmt.Sprintf("PGPORT=%d", c.Port()))
	for k, v := range writer.Environment {
		if k == "PGHOST" {
			v = "127.0.0.1"
		}
		loop.Env = append(loop.Env, k+"="+v)
	}
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	err = rcv.WaitFor(wctx, func(r []testenv.Request) bool {
		return strings.Contains(string(r[len(r)-1].Body), "user2@example.com")
	})
	loop.Process.Kill()
	loop.Wait()
	if err != nil {
		t.Fatalf("the compose writer's changes: %v", err)
	}
	p.stop(t)

	t.Run("kubernetes", func(t *testing.T) { checkKubernetes(t, c) })
}

// composeInterpolate applies compose's ${VAR:-default} with nothing set in
// the environment, as a fresh `docker compose up` does.
func composeInterpolate(s string) string {
	re := regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		return re.FindStringSubmatch(m)[2]
	})
}

// mountedPaths replaces, in a container's arguments, each path under a
// bind-mounted file with the file in the repository.
func mountedPaths(t *testing.T, args, volumes []string) []string {
	out := append([]string(nil), args...)
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			continue
		}
		for i, a := range out {
			if a == parts[1] {
				out[i] = filepath.Join(repo, parts[0])
			}
		}
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// freeAddr returns a 127.0.0.1 address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func connectAs(t *testing.T, c *testenv.Cluster, role string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), strings.Replace(c.DSN("app"), "postgres@", role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func waitActive(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	eventually(t, 60*time.Second, "walhook attached to its slot", func() (bool, string) {
		var n int
		err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_replication_slots WHERE active").Scan(&n)
		return err == nil && n == 1, fmt.Sprint(n, err)
	})
}
