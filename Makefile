# ngx_gi2_module: build, run, test and benchmark against Debian's stock nginx.
#
#   make run     start the example gateway on 127.0.0.1:8080 (make stop ends it)
#   make test    build everything and run the whole suite with prove
#   make bench   throughput and memory figures, as ratios to a baseline,
#                and gi2-check's prompts per second
#   make gi2-check   build/gi2-check, the rule checker (docs/gi2-check.md)
#   make fuzz    each libFuzzer harness fuzz/*_fuzz.c for FUZZ_TIME seconds
#   make test-asan      the suite against the module built with ASan+UBSan
#   make test-valgrind  a subset of the suite with nginx under valgrind

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
DEB_FUZZ := clang libclang-rt-dev
DEB_CHECK := valgrind
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
UNITS := gi2_unit gi2_resp_unit gi2_modapi_unit gi2_multipart_unit \
         gi2_responses_unit
CHECK := $(BUILD)/gi2-check
CHECK_SRCS := $(addprefix ngx_gi2_module/,gi2_norm.c gi2_req.c gi2_match.c)
WERROR_OPT := -Wall -Wextra -Werror -Wno-unused-parameter \
              -Wno-missing-field-initializers

# fuzz/NAME_fuzz.c: libFuzzer harnesses of the nginx-free core, linked with
# every gi2_*.c (a new parser is picked up without a change here).  Each
# is also built with a plain main (fuzz/replay.c) under ASan+UBSan, which
# `make test` runs over fuzz/corpus/NAME and fuzz/regress/NAME.
FUZZ_TIME ?= 60
FUZZ_NAMES := $(patsubst fuzz/%_fuzz.c,%,$(wildcard fuzz/*_fuzz.c))
FUZZ_CORE := $(wildcard ngx_gi2_module/gi2_*.c)
FUZZ_DEPS := $(FUZZ_CORE) $(wildcard ngx_gi2_module/gi2_*.h) fuzz/fuzz.h
FUZZ_CFLAGS := -std=c99 -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer \
               -Wall -Wextra -Werror -I ngx_gi2_module -I /usr/include/yajl
FUZZ_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%_fuzz)
REPLAY_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%_replay)

# make test-asan: the module built with gcc's ASan and UBSan into build/asan
# and loaded into the stock nginx with the runtimes preloaded
# (t/sanitize/asan-nginx); the C unit tests built the same way.
# make test-valgrind: the stock build under valgrind, on VALGRIND_TESTS.
ASAN := $(BUILD)/asan
ASAN_MODULE := $(ASAN)/ngx_http_gi2_module.so
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
ASAN_UNITS = $(UNITS:%=$(ASAN)/%)
VALGRIND := $(BUILD)/valgrind
VALGRIND_TESTS ?= t/10-allow.t t/20-rules.t t/30-keywords.t t/40-moderation.t \
                  t/50-exception.t t/55-header-removal.t t/60-bad-input.t \
                  t/70-body-transport.t t/80-passthrough.t \
                  t/85-redirect-and-edges.t t/100-audit-response.t \
                  t/110-audit-directives.t t/140-hostile.t

.PHONY: all deps deps-bench deps-test deps-fuzz deps-check module unit \
        gi2-check test run stop bench bench-check soak clean fuzz \
        module-asan test-asan test-valgrind

all: module unit gi2-check

deps:
	@bash .ci/deps $(DEB_BUILD)

deps-bench:
	@bash .ci/deps $(DEB_BUILD) $(DEB_BENCH)

deps-test:
	@bash .ci/deps $(DEB_BUILD) $(DEB_TEST)

deps-fuzz:
	@bash .ci/deps $(DEB_BUILD) $(DEB_FUZZ)

deps-check:
	@bash .ci/deps $(DEB_BUILD) $(DEB_CHECK)

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

$(ASAN)/nginx-src/objs/Makefile: config | deps
	@rm -rf $(ASAN)/nginx-src && mkdir -p $(ASAN)
	cp -a $(NGX_SRC) $(ASAN)/nginx-src
	cd $(ASAN)/nginx-src && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-g -O1 -fPIC $(SAN_FLAGS) $(WERROR_OPT)" \
	    --with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC $(SAN_FLAGS)" \
	    --add-dynamic-module=$(TOP) > $(ASAN)/configure.log 2>&1 \
	    || { tail -20 $(ASAN)/configure.log; exit 1; }

$(ASAN_MODULE): $(ASAN)/nginx-src/objs/Makefile $(NGX_SRCS)
	$(MAKE) -C $(ASAN)/nginx-src -f objs/Makefile modules
	cp $(ASAN)/nginx-src/objs/ngx_http_gi2_module.so $@.tmp && mv -f $@.tmp $@

$(ASAN_UNITS): $(ASAN)/%: t/unit/%.c t/unit/unit_tap.h t/unit/unit_pool.h \
                            $(CORE_SRCS) $(wildcard ngx_gi2_module/gi2_*.h) \
                            | deps
	@mkdir -p $(ASAN)
	$(CC) $(CORE_CFLAGS) $(SAN_FLAGS) -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

module-asan: deps $(ASAN_MODULE)

$(BUILD)/fuzz/%_fuzz: fuzz/%_fuzz.c $(FUZZ_DEPS) | deps-fuzz
	@mkdir -p $(BUILD)/fuzz
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_CORE) $(CORE_LIBS)

$(BUILD)/fuzz/%_replay: fuzz/%_fuzz.c fuzz/replay.c $(FUZZ_DEPS) | deps
	@mkdir -p $(BUILD)/fuzz
	$(CC) $(FUZZ_CFLAGS) -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< fuzz/replay.c \
	    $(FUZZ_CORE) $(CORE_LIBS)


$(BUILD)/gi2_multipart_unit: t/unit/gi2_multipart_unit.c t/unit/unit_tap.h \
                             t/unit/unit_pool.h $(CORE_SRCS) \
                             ngx_gi2_module/gi2_core.h \
                             ngx_gi2_module/gi2_multipart.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_multipart_unit.c $(CORE_SRCS) \
	    $(CORE_LIBS)

$(BUILD)/gi2_responses_unit: t/unit/gi2_responses_unit.c t/unit/unit_tap.h \
                             t/unit/unit_pool.h $(CORE_SRCS) \
                             ngx_gi2_module/gi2_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ t/unit/gi2_responses_unit.c $(CORE_SRCS) \
	    $(CORE_LIBS)

unit: $(UNITS:%=$(BUILD)/%) $(REPLAY_BINS)

# the rule checker: the same core, no nginx
$(CHECK): tools/gi2_check.c $(CHECK_SRCS) ngx_gi2_module/gi2_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -o $@ tools/gi2_check.c $(CHECK_SRCS) \
	    -lpcre2-8 -lyajl -lutf8proc

gi2-check: $(CHECK)

# the response-side files again with every location's scanner on a thread
# pool (gi2_response_inspection threads)
THREADS_T = t/100-audit-response.t t/110-audit-directives.t \
	t/120-audit-stream.t t/140-hostile.t t/150-metrics.t t/160-multipart.t \
	t/161-responses.t

test: deps-test module unit gi2-check
	prove -r t/
	GI2_TEST_RESPONSE_THREADS=1 prove $(THREADS_T)

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

# Sanitizer reports land in $(ASAN)/logs; any file there fails the target.
test-asan: module-asan $(ASAN_UNITS) $(REPLAY_BINS)
	@rm -rf $(ASAN)/logs && mkdir -p $(ASAN)/logs && chmod 1777 $(ASAN)/logs
	@start=$$(date +%s); \
	ASAN_OPTIONS=log_path=$(ASAN)/logs/asan:detect_leaks=1 \
	UBSAN_OPTIONS=log_path=$(ASAN)/logs/ubsan:print_stacktrace=1 \
	    prove --exec '' $(ASAN_UNITS); ur=$$?; \
	GI2_NGINX=$(TOP)/t/sanitize/asan-nginx GI2_MODULE=$(ASAN_MODULE) \
	GI2_SAN_LOGS=$(ASAN)/logs GI2_TIMEOUT=30 prove -r t/; pr=$$?; \
	GI2_NGINX=$(TOP)/t/sanitize/asan-nginx GI2_MODULE=$(ASAN_MODULE) \
	GI2_SAN_LOGS=$(ASAN)/logs GI2_TIMEOUT=30 GI2_TEST_RESPONSE_THREADS=1 \
	    prove $(THREADS_T) || pr=1; \
	echo "test-asan: $$(( $$(date +%s) - start )) s"; \
	if [ -n "$$(ls -A $(ASAN)/logs)" ]; then \
	    echo "test-asan: sanitizer reports:"; \
	    head -n 40 $(ASAN)/logs/*; exit 1; fi; \
	[ $$ur -eq 0 ] && [ $$pr -eq 0 ]

# valgrind: no invalid access anywhere, no definite leak through the module
test-valgrind: deps-check module unit
	@rm -rf $(VALGRIND) && mkdir -p $(VALGRIND) && chmod 1777 $(VALGRIND)
	GI2_NGINX=$(TOP)/t/sanitize/valgrind-nginx GI2_SAN_LOGS=$(VALGRIND) \
	GI2_TIMEOUT=60 prove $(VALGRIND_TESTS)
	perl t/sanitize/valgrind-check $(VALGRIND)

fuzz: deps-fuzz $(FUZZ_BINS)
	@bash fuzz/run.sh $(FUZZ_TIME) $(FUZZ_NAMES)

clean:
	rm -rf $(BUILD)
