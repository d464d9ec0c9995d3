# ngx_gi2_module: build, run, test and benchmark against Debian's stock nginx.
#
#   make run     start the example gateway on 127.0.0.1:8080 (make stop ends it)
#   make test    build everything and run the whole suite with prove
#   make bench   throughput and memory figures, as ratios to a baseline,
#                and gi2-check's prompts per second
#   make gi2-check   build/gi2-check, the rule checker (docs/gi2-check.md)

SHELL := /bin/bash
TOP := $(CURDIR)
BUILD := $(TOP)/build
NGX_SRC ?= /usr/share/nginx/src
NGINX ?= /usr/sbin/nginx
MODULE := $(BUILD)/ngx_http_gi2_module.so

# Debian packages the build, the tests and the bench need.
DEB_BUILD := nginx nginx-dev libpcre2-dev libyajl-dev libutf8proc-dev \
             libssl-dev zlib1g-dev libcurl4-openssl-dev gcc make pkg-config \
             perl curl openssl
DEB_BENCH := wrk libnginx-mod-http-modsecurity libnginx-mod-http-lua \
             lua-cjson python3
# ... and the tests, beyond the build (t/151: the status page in a browser)
DEB_TEST := chromium

CORE_SRCS := $(addprefix ngx_gi2_module/,gi2_norm.c gi2_req.c gi2_match.c \
             gi2_resp.c gi2_modapi.c gi2_multipart.c)
NGX_SRCS := $(wildcard ngx_gi2_module/*.c ngx_gi2_module/*.h) config
CORE_CFLAGS := -std=c99 -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Werror \
               -I ngx_gi2_module -I /usr/include/yajl
CORE_LIBS := -lpcre2-8 -lyajl -lutf8proc -lcrypto
CHECK := $(BUILD)/gi2-check
CHECK_SRCS := $(addprefix ngx_gi2_module/,gi2_norm.c gi2_req.c gi2_match.c)
WERROR_OPT := -Wall -Wextra -Werror -Wno-unused-parameter \
              -Wno-missing-field-initializers

.PHONY: all deps deps-bench deps-test module unit gi2-check test run stop \
        bench bench-check soak clean

all: module unit gi2-check

deps:
	@bash .ci/deps $(DEB_BUILD)

deps-bench:
	@bash .ci/deps $(DEB_BUILD) $(DEB_BENCH)

deps-test:
	@bash .ci/deps $(DEB_BUILD) $(DEB_TEST)

$(BUILD)/nginx-src/objs/Makefile: config | deps
	@rm -rf $(BUILD)/nginx-src && mkdir -p $(BUILD)
	cp -a $(NGX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-g -O2 -fPIC $(WERROR_OPT)" \
	    --with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC" \
	    --add-dynamic-module=$(TOP) > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx-src/objs/Makefile $(NGX_SRCS)
	$(MAKE) -C $(BUILD)/nginx-src -f objs/Makefile modules
	cp $(BUILD)/nginx-src/objs/ngx_http_gi2_module.so $@.tmp && mv -f $@.tmp $@

module: deps $(MODULE)

$(BUILD)/gi2_unit: t/unit/gi2_unit.c t/unit/unit_tap.h $(CORE_SRCS) ngx_gi2_module/gi2_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_unit.c $(CORE_SRCS) $(CORE_LIBS)

$(BUILD)/gi2_resp_unit: t/unit/gi2_resp_unit.c t/unit/unit_tap.h $(CORE_SRCS) \
                        ngx_gi2_module/gi2_core.h ngx_gi2_module/gi2_resp.h \
                        | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_resp_unit.c $(CORE_SRCS) $(CORE_LIBS)

$(BUILD)/gi2_modapi_unit: t/unit/gi2_modapi_unit.c t/unit/unit_tap.h \
                          $(CORE_SRCS) ngx_gi2_module/gi2_core.h \
                          ngx_gi2_module/gi2_modapi.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_modapi_unit.c $(CORE_SRCS) \
	    $(CORE_LIBS)

$(BUILD)/gi2_multipart_unit: t/unit/gi2_multipart_unit.c t/unit/unit_tap.h \
                             t/unit/unit_pool.h $(CORE_SRCS) ngx_gi2_module/gi2_core.h \
                             ngx_gi2_module/gi2_multipart.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_multipart_unit.c $(CORE_SRCS) \
	    $(CORE_LIBS)

$(BUILD)/gi2_responses_unit: t/unit/gi2_responses_unit.c t/unit/unit_tap.h \
                             t/unit/unit_pool.h $(CORE_SRCS) ngx_gi2_module/gi2_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_responses_unit.c $(CORE_SRCS) \
	    $(CORE_LIBS)

unit: $(BUILD)/gi2_unit $(BUILD)/gi2_resp_unit $(BUILD)/gi2_modapi_unit \
      $(BUILD)/gi2_multipart_unit $(BUILD)/gi2_responses_unit

# the rule checker: the same core, no nginx
$(CHECK): tools/gi2_check.c $(CHECK_SRCS) ngx_gi2_module/gi2_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ tools/gi2_check.c $(CHECK_SRCS) \
	    -lpcre2-8 -lyajl -lutf8proc

gi2-check: $(CHECK)

test: deps-test module unit gi2-check
	prove -r t/

run: module
	@bash examples/run.sh start

stop:
	@bash examples/run.sh stop

bench: deps-bench module gi2-check
	@bash bench/run.sh
	@bash bench/check.sh

bench-check: deps-bench gi2-check
	@bash bench/check.sh

# SOAK_DUR=600 (seconds) by default; see bench/soak.sh
soak: deps-bench module
	@bash bench/soak.sh

clean:
	rm -rf $(BUILD)
