# Every target sets up its own .venv (created, or refreshed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: demo test test-fast compile bench bench-demo images clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "safetax needs Python >= 3.11"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# The CPU build of torch, pinned first so nothing pulls a CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

demo: $(STAMP)  ## run the alignment pipeline locally on the tiny demo model
	$(VENV)/bin/safetax demo $(ARGS)

test: $(STAMP)  ## all tests, end-to-end ones included (installs missing Debian packages: prometheus, pushgateway, kubectl)
	scripts/system-deps.sh
	$(VENV)/bin/python -m pytest $(ARGS)

test-fast: $(STAMP)  ## unit tests only
	scripts/system-deps.sh
	$(VENV)/bin/python -m pytest -m "not e2e" $(ARGS)

# Shipped YAML names the release's images (<registry>/safetax-<profile>:<version>), not a commit's.
compile: export SAFETAX_IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
compile: $(STAMP)  ## recompile the shipped YAML: pipelines/, components/, k8s/pipelines/, k8s/overlays/example/pipelines/
	$(VENV)/bin/safetax compile --out pipelines
	$(VENV)/bin/safetax compile --components --out components
	$(VENV)/bin/safetax compile --k8s-manifests --out k8s/pipelines
	$(VENV)/bin/safetax compile --k8s-manifests --platform k8s/overlays/example/platform.yaml --out k8s/overlays/example/pipelines

BENCH_SLOW := bench/bench_demo.py
bench: $(STAMP)  ## benchmarks that print ratios and PASS/FAIL (all but the ~45-minute demo bench; fails if any failed)
	status=0; for b in $(filter-out $(BENCH_SLOW),$(wildcard bench/bench_*.py)); do $(VENV)/bin/python $$b || status=1; done; exit $$status

bench-demo: $(STAMP)  ## the demo's wall-time bench: 3 interleaved rounds of cold and warm runs (~45 minutes)
	$(VENV)/bin/python bench/bench_demo.py

# Container images, one per dependency profile (images/*.Dockerfile, built from the repository root).
# `python -m safetax.images` names them (standard library only, so no .venv is needed):
# <registry>/safetax-<profile>:<version>-<12 hex of HEAD>; registry from $SAFETAX_IMAGE_REGISTRY (default
# ghcr.io/safetax), tag overridable by $SAFETAX_IMAGE_TAG. Commit first: uncommitted changes are not in the tag.
# With PUSH=1 the registry's digests go to $(IMAGE_DIGESTS), for `SAFETAX_IMAGE_DIGESTS=$(IMAGE_DIGESTS) safetax compile`.
#   make images [IMAGE_PROFILES="train vllm cpu"] [PUSH=1] [CONTAINER_ENGINE=podman] [SAFETAX_IMAGE_TAG=...]
#               [IMAGE_BUILD_ARGS="--build-arg TORCH_VERSION=... --build-arg BASE_IMAGE=..."]
CONTAINER_ENGINE ?= docker
PUSH ?= 0
IMAGE_PROFILES ?=
IMAGE_BUILD_ARGS ?=
IMAGE_DIGESTS ?= build/image-digests.json
comma := ,
IMAGE_ENV = $(if $(SAFETAX_IMAGE_REGISTRY),SAFETAX_IMAGE_REGISTRY=$(SAFETAX_IMAGE_REGISTRY)) \
	$(if $(SAFETAX_IMAGE_TAG),SAFETAX_IMAGE_TAG=$(SAFETAX_IMAGE_TAG)) PYTHONPATH=src
# One word per image: "profile,image,dockerfile,version".
IMAGE_TABLE = $(shell $(IMAGE_ENV) $(PYTHON) -m safetax.images $(IMAGE_PROFILES) | tr ' ' ',')
IMAGE_REVISION = $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# $(call image_recipe,PROFILE IMAGE DOCKERFILE VERSION): build and tag (IMAGE_TAG also becomes the image's
# $SAFETAX_IMAGE_TAG, so the registrar in it names these images), push if PUSH=1.
define image_recipe
$(strip $(CONTAINER_ENGINE) build --file $(word 3,$(1)) --tag $(word 2,$(1)) --build-arg VERSION=$(word 4,$(1)) \
	--build-arg REVISION=$(IMAGE_REVISION) --build-arg IMAGE_TAG=$(lastword $(subst :, ,$(word 2,$(1)))) $(IMAGE_BUILD_ARGS) .)
$(if $(filter 1,$(PUSH)),$(CONTAINER_ENGINE) push $(word 2,$(1)))

endef

images:  ## build the train, vllm and cpu images, tagged <version>-<git sha> (PUSH=1 also pushes them and records digests)
	$(if $(IMAGE_TABLE),,$(error python -m safetax.images named no image (see its error above)))
	$(foreach row,$(IMAGE_TABLE),$(call image_recipe,$(subst $(comma), ,$(row))))
	$(if $(filter 1,$(PUSH)),mkdir -p $(dir $(IMAGE_DIGESTS)) && $(IMAGE_ENV) $(PYTHON) -m safetax.images --digests \
		--engine $(CONTAINER_ENGINE) $(IMAGE_PROFILES) > $(IMAGE_DIGESTS))

clean:
	rm -rf $(VENV) runs .pytest_cache
