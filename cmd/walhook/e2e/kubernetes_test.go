package e2e_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/testenv"
)

// checkKubernetes runs `walhook check` on the ConfigMap's configuration, at
// the path the Deployment mounts it, with the environment the Deployment
// takes from its Secret; and checks the manifests keep the promises the
// README makes (two replicas, probes, non-root, read-only root).
func checkKubernetes(t *testing.T, c *testenv.Cluster) {
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type container struct {
		Args []string `yaml:"args"`
		Env  []struct {
			Name      string `yaml:"name"`
			ValueFrom struct {
				SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe   probe `yaml:"livenessProbe"`
		ReadinessProbe  probe `yaml:"readinessProbe"`
		Resources       map[string]map[string]string
		SecurityContext struct {
			ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	type object struct {
		Kind     string `yaml:"kind"`
		Metadata struct{ Name string }
		Data     map[string]string `yaml:"data"`
		Spec     struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					SecurityContext struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					Containers []container `yaml:"containers"`
					Volumes    []struct {
						Name      string                `yaml:"name"`
						ConfigMap struct{ Name string } `yaml:"configMap"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var objects []object
	files, _ := filepath.Glob(filepath.Join(repo, "deploy/kubernetes/*.yaml"))
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(r)
		for {
			var o object
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: %v", f, err)
				}
				break
			}
			objects = append(objects, o)
		}
		r.Close()
	}
	configMaps := map[string]map[string]string{}
	var deploy *object
	for i, o := range objects {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "Deployment":
			deploy = &objects[i]
		}
	}
	if deploy == nil || len(deploy.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("deploy/kubernetes has no Deployment with one container")
	}
	pod := deploy.Spec.Template.Spec
	ctr := pod.Containers[0]
	if deploy.Spec.Replicas != 2 || !pod.SecurityContext.RunAsNonRoot || !ctr.SecurityContext.ReadOnlyRootFilesystem ||
		ctr.LivenessProbe.HTTPGet.Path != "/healthz" || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		ctr.Resources["requests"]["memory"] == "" || ctr.Resources["limits"]["memory"] == "" {
		t.Errorf("Deployment: want 2 replicas, non-root, read-only root, /healthz and /readyz probes, memory request and limit; got %+v", deploy.Spec)
	}
	if len(ctr.Args) < 3 || ctr.Args[0] != "run" || ctr.Args[1] != "-config" || len(ctr.VolumeMounts) != 1 || len(pod.Volumes) != 1 {
		t.Fatalf("Deployment: want args run -config FILE and one mounted ConfigMap, got %q", ctr.Args)
	}
	rel, err := filepath.Rel(ctr.VolumeMounts[0].MountPath, ctr.Args[2])
	data := configMaps[pod.Volumes[0].ConfigMap.Name][rel]
	if err != nil || data == "" {
		t.Fatalf("the ConfigMap mounted at %s holds no %s", ctr.VolumeMounts[0].MountPath, ctr.Args[2])
	}
	if !strings.Contains(data, fmt.Sprintf(`listen: ":%d"`, ctr.Ports[0].ContainerPort)) {
		t.Errorf("the configuration's admin.listen does not serve the probes' port %d", ctr.Ports[0].ContainerPort)
	}
	cfg := filepath.Join(t.TempDir(), rel)
	writeFile(t, cfg, data)
	env := os.Environ()
	for _, e := range ctr.Env {
		switch e.ValueFrom.SecretKeyRef.Key {
		case "DATABASE_URL":
			env = append(env, e.Name+"="+strings.Replace(c.DSN("app"), "postgres@", "walhook:walhook@", 1))
		default:
			env = append(env, e.Name+"="+secret)
		}
	}
	out, code := runWith(t, env, 60*time.Second, "check", "-config", cfg)
	if code != 0 || strings.Contains(out, "FAIL ") {
		t.Fatalf("walhook check on the Kubernetes configuration (exit %d):\n%s", code, out)
	}
}
