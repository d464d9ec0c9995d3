#!/usr/bin/perl

# The external moderation service (gi2_moderation_api): what is sent (the
# bearer token, the model, the prompt, the generic contract's consumer
# hash), the verdicts (clean, flagged, thresholds, deny or flag), the
# order (local rules first), every way the service can fail (slow, down,
# 5xx, malformed, huge, reset, closed, a redirect) under fail closed and
# fail open, TLS verification, connection reuse, the variables and the
# audit record, and that the key appears in no log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use Digest::SHA qw(hmac_sha256_hex);

require_module();

my $KEY = 'sk-mod-Secret-7f3a9c';
my $HASH_KEY = '0123456789abcdef0123456789abcdef';
my $GEN = 'v1/images/generations';
my $OK_BODY = '{"created":1713833628,"data":[{"b64_json":"iVBORw0KGgo="}],'
    . '"usage":{"total_tokens":100,"input_tokens":50,"output_tokens":50,'
    . '"input_tokens_details":{"text_tokens":10,"image_tokens":40}}}';

write_file('gi2.key', "$HASH_KEY\n");
write_file('mod.key', "$KEY\n");

# a certificate for the TLS front of the mock (127.0.0.1 and localhost)
my $TLS = prefix() . '/tls';
mkdir $TLS;
my $have_tls = system('openssl req -x509 -newkey rsa:2048 -nodes -days 2 '
    . "-keyout $TLS/key.pem -out $TLS/cert.pem -subj /CN=localhost "
    . '-addext subjectAltName=DNS:localhost,IP:127.0.0.1 '
    . '>/dev/null 2>&1') == 0;

my $A = \&modapi_answer;

modapi_set(
    default => { json => $A->(0, { violence => [0, 0.01] }) },
    match => [
        ['violent', { json => $A->(1, { violence => [1, 0.91],
            hate => [0, 0.01] }) }],
        ['hateful', { json => $A->(1, { violence => [1, 0.91],
            hate => [1, 0.88], sexual => [0, 0.01] }) }],
        ['border', { json => $A->(0, { violence => [0, 0.6],
            hate => [0, 0.79] }) }],
        ['exactly', { json => $A->(0, { violence => [0, 0.1],
            hate => [0, 0.8] }) }],
        ['mild', { json => $A->(1, { violence => [1, 0.4],
            hate => [1, 0.7] }) }],
        ['slowpoke', { delay => 4 }],
        ['boom500', { status => 500,
            body => '{"error":{"message":"overloaded"}}' }],
        ['boom429', { status => 429, body => '{"error":{}}' }],
        ['garbage', { body => '{"results":[{"flagged":tru' }],
        ['shape', { body => '{"results":[]}' }],
        ['htmlpage', { body => '<html>oops</html>',
            headers => [['Content-Type', 'text/html']] }],
        ['hugestream', { size => 200000, no_length => 1 }],
        ['huge', { size => 200000 }],
        ['resetme', { reset => 1 }],
        ['closeme', { close => 1 }],
        ['redirect', { status => 302, body => '',
            headers => [['Location', 'http://127.0.0.1:1/x']] }],
        ['generic-flag', { json => { flagged => JSON::PP::true,
            categories => ['violence', 'self-harm/intent'],
            scores => { violence => 0.9 } } }],
        ['generic-clean', { json => { flagged => JSON::PP::false,
            categories => [], scores => {} } }],
        ['generic-openai', { json => $A->(0, {}) }],
    ],
);

my $conf = <<'EOF';
    log_format modvars escape=json
        '$http_x_t|$status|$gi2_decision|$gi2_reject_code|'
        '$gi2_moderation_result|$gi2_moderation_cached|'
        '$gi2_moderation_flagged_categories|$gi2_moderation_ms|'
        '$gi2_rule_id';
%%AUDIT_HTTP%%
    gi2_metrics zone=modm:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
%%AUDIT_SERVER%%
        access_log %%PREFIX%%/mod.log modvars;

        location = /status { gi2_status; }

        gi2 on;
        gi2_hash_key_file %%PREFIX%%/gi2.key;
        gi2_rule r_nude deny sexual "\bnude\b";
        gi2_rule f_gun flag weapons "\bgun\b";

        gi2_moderation_api http://%%MODAPI%%/v1/moderations;
        gi2_moderation_key_file %%PREFIX%%/mod.key;
        gi2_moderation_timeout 1s;

        location /deny/ { proxy_pass http://%%UPSTREAM%%; }
        location /open/ {
            gi2_moderation_fail open;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /flag/ {
            gi2_moderation_action flag;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /thr/ {
            gi2_moderation_threshold violence 0.5;
            gi2_moderation_threshold hate 0.8;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /model/ {
            gi2_moderation_model text-moderation-007;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /generic/ {
            gi2_moderation_api http://%%MODAPI%%/check format=generic;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /consumer/ {
            gi2_moderation_api http://%%MODAPI%%/check format=generic;
            gi2_consumer $http_x_team;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /down/ {
            gi2_moderation_api http://127.0.0.1:%%PORT2%%/v1/moderations;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /downopen/ {
            gi2_moderation_api http://127.0.0.1:%%PORT2%%/v1/moderations;
            gi2_moderation_fail open;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /off/ {
            gi2_moderation_api off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /images/ {
            gi2_moderation_images on;
            gi2_moderation_cache zone=img:1m;
            client_body_buffer_size 1k;
            client_max_body_size 16m;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /genimages/ {
            gi2_moderation_api http://%%MODAPI%%/check format=generic;
            gi2_moderation_images on;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /gi2off/ {
            gi2 off;
            proxy_pass http://%%UPSTREAM%%;
        }
%%TLS_LOCATIONS%%
    }
%%TLS_SERVER%%
EOF

my $tls_locations = <<'EOF';
        location /tls/ {
            gi2_moderation_api https://127.0.0.1:%%PORT3%%/v1/moderations;
            gi2_moderation_ca_file %%PREFIX%%/tls/cert.pem;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /tlsname/ {
            gi2_moderation_api https://localhost:%%PORT3%%/v1/moderations;
            gi2_moderation_ca_file %%PREFIX%%/tls/cert.pem;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /tlsbad/ {
            gi2_moderation_api https://127.0.0.1:%%PORT3%%/v1/moderations;
            proxy_pass http://%%UPSTREAM%%;
        }
EOF

# the mock behind TLS: served by the same nginx, on the same worker
my $tls_server = <<'EOF';
    server {
        listen 127.0.0.1:%%PORT3%% ssl;
        ssl_certificate %%PREFIX%%/tls/cert.pem;
        ssl_certificate_key %%PREFIX%%/tls/key.pem;
        access_log off;
        location / { proxy_pass http://%%MODAPI%%; }
    }
EOF

my $audit_http = audit_http();
my $audit_server = audit_server();
$conf =~ s/%%AUDIT_HTTP%%\n/$audit_http/;
$conf =~ s/%%AUDIT_SERVER%%\n/$audit_server/;
$conf =~ s/%%TLS_LOCATIONS%%\n/$have_tls ? $tls_locations : ''/e;
$conf =~ s/%%TLS_SERVER%%\n/$have_tls ? $tls_server : ''/e;
my $MODAPI = modapi_addr();
$conf =~ s/%%MODAPI%%/$MODAPI/g;

gi2_start($conf);

###########################################################################

my @MOD_FIELDS = qw(t status decision code result cached categories ms
    rules);

# The mod.log line of a request: nginx writes it beside the access log
# line, so it is waited for as log_for waits for that one.
sub modlog {
    my ($res) = @_;
    log_for($res);
    my $end = time() + 10;
    while (1) {
        for my $l (reverse split /\n/,
            read_file(prefix() . '/mod.log') // '')
        {
            my %e;
            @e{@MOD_FIELDS} = split /\|/, $l, -1;
            return \%e if $e{t} eq $res->{id};
        }
        return {} if time() > $end;
        select(undef, undef, undef, 0.02);
    }
}

sub call {
    my ($loc, $prompt, %o) = @_;
    upstream_reset();
    modapi_reset();
    my $body = $o{body} // json_encode({ prompt => $prompt,
        model => 'gpt-image-1' });
    my $res = http_post("/$loc/$GEN", $body, @{ $o{headers} || [] });
    $res->{sent} = $body;
    return $res;
}

# The moderation log fields of $res are these.
sub mod_is {
    my ($res, $want, $name) = @_;
    my $e = modlog($res);
    my %got = map { $_ => $e->{$_} } keys %$want;
    is_deeply(\%got, $want, "$name: variables")
        or diag('line: ' . join('|', map { $e->{$_} // '' } @MOD_FIELDS));
    return $e;
}

sub one_call {
    my ($name) = @_;
    my @r = modapi_requests();
    is(scalar @r, 1, "$name: one call to the service");
    return $r[0] || { headers => {}, json => {} };
}

sub forwarded {
    my ($res, $name) = @_;
    is($res->{status}, 200, "$name: forwarded, 200")
        or diag($res->{raw});
    my @u = upstream_requests();
    is(scalar @u, 1, "$name: one upstream request");
    is($u[0]{body}, $res->{sent}, "$name: upstream got the body as sent")
        if @u;
    is($res->{body}, $OK_BODY, "$name: the client got upstream's answer");
}

sub unavailable {
    my ($res, $name) = @_;
    is($res->{status}, 503, "$name: 503") or diag($res->{raw});
    my $e = ref $res->{json} eq 'HASH' ? $res->{json}{error} : {};
    is_deeply([sort keys %{ $e || {} }], [qw(code message param type)],
        "$name: an OpenAI-shaped error");
    is($e->{code}, 'gi2_moderation_unavailable', "$name: code");
    is($e->{type}, 'server_error', "$name: type server_error");
    is($e->{param}, undef, "$name: param null");
    ok(!header_values($res, 'x-should-retry'),
        "$name: no x-should-retry: false (worth a retry)");
    no_upstream($name);
}

###########################################################################

# what is sent, and connection reuse

{
    my $r = call('deny', "a lighthouse at dawn");
    forwarded($r, 'clean');
    my $m = one_call('clean');
    is($m->{method}, 'POST', 'clean: POST');
    is($m->{uri}, '/v1/moderations', 'clean: the configured path');
    is_deeply($m->{headers}{authorization}, ["Bearer $KEY"],
        'clean: the key as a bearer token, once');
    like(($m->{headers}{'content-type'} || [''])->[0],
        qr{^application/json$}, 'clean: JSON');
    is_deeply($m->{json}, { model => 'omni-moderation-latest',
        input => 'a lighthouse at dawn' },
        'clean: exactly model and input');
    ok(!$m->{headers}{'x-t'} && !$m->{headers}{'x-gi2-exception'},
        "clean: none of the client's headers");
    mod_is($r, { status => 200, decision => 'allow', code => '',
        result => 'clean', cached => '0', categories => '' }, 'clean');
    like(modlog($r)->{ms}, qr/^\d+$/, 'clean: $gi2_moderation_ms a number');
    my $conn = $m->{conn};

    $r = call('deny', "caf\x{e9} \"quoted\"\nnew line \\ \x{732b}",
        body => json_encode({ prompt => "caf\x{e9} \"quoted\"\nnew line "
            . "\\ \x{732b}" }));
    forwarded($r, 'escaped prompt');
    $m = one_call('escaped prompt');
    is($m->{json}{input}, "caf\x{e9} \"quoted\"\nnew line \\ \x{732b}",
        'escaped prompt: sent as decoded, re-escaped');
    is($m->{conn}, $conn, 'keep-alive: the second call reuses the '
        . 'connection');
}

# flagged: rejected with the categories named, or only flagged

{
    my $r = call('deny', 'a violent scene');
    my $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'flagged');
    is($e->{message}, "The prompt was rejected by the gateway's moderation "
        . 'service (categories: violence).', 'flagged: the message');
    no_upstream('flagged');
    one_call('flagged');
    mod_is($r, { status => 400, decision => 'reject',
        code => 'gi2_prompt_rejected', result => 'flagged', cached => '0',
        categories => 'violence', rules => '' }, 'flagged');

    $r = call('deny', 'a hateful scene');
    $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'two categories');
    # in the answer's order (the mock writes its keys sorted)
    is($e->{message}, "The prompt was rejected by the gateway's moderation "
        . 'service (categories: hate, violence).',
        'two categories: both named');
    mod_is($r, { categories => 'hate,violence' }, 'two categories');

    $r = call('flag', 'a violent scene');
    forwarded($r, 'action flag');
    mod_is($r, { decision => 'flag', code => '', result => 'flagged',
        categories => 'violence' }, 'action flag');
}

# thresholds decide instead of the service's own flag

{
    my $r = call('thr', 'a border case');
    my $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'threshold reached');
    like($e->{message}, qr/\(categories: violence\)\.$/,
        'threshold reached: violence 0.6 >= 0.5, hate 0.79 < 0.8');
    mod_is($r, { result => 'flagged', categories => 'violence' },
        'threshold reached');

    $r = call('thr', 'exactly there');
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'threshold met exactly');
    mod_is($r, { categories => 'hate' }, 'threshold met exactly');

    $r = call('thr', 'a mild one');
    forwarded($r, 'service flagged, thresholds not reached');
    mod_is($r, { result => 'clean', categories => '' },
        'service flagged, thresholds not reached');

    $r = call('deny', 'a mild one');
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'the same without thresholds');
}

# the model, the generic contract and its consumer hash

{
    my $r = call('model', 'a cat');
    forwarded($r, 'model');
    is(one_call('model')->{json}{model}, 'text-moderation-007',
        'model: gi2_moderation_model');

    $r = call('generic', 'generic-clean cat',
        headers => [Authorization => 'Bearer sk-client-42']);
    forwarded($r, 'generic clean');
    my $m = one_call('generic clean');
    is($m->{uri}, '/check', 'generic: its URL');
    is_deeply($m->{json}, { prompt => 'generic-clean cat',
        model => 'omni-moderation-latest',
        consumer => 'hmac-sha256:' . hmac_sha256_hex('sk-client-42',
            $HASH_KEY) },
        'generic: prompt, model, the consumer as an HMAC');
    unlike($m->{body}, qr/sk-client-42/,
        "generic: the client's credential is not sent");

    $r = call('generic', 'generic-clean cat');
    forwarded($r, 'generic without consumer');
    ok(exists one_call('generic without consumer')->{json}{consumer}
        && !defined one_call('generic')->{json}{consumer},
        'generic: no consumer is null');

    $r = call('consumer', 'generic-clean dog',
        headers => ['X-Team' => 'team-a']);
    is(one_call('gi2_consumer')->{json}{consumer},
        'hmac-sha256:' . hmac_sha256_hex('team-a', $HASH_KEY),
        'generic: the consumer of gi2_consumer');

    $r = call('generic', 'generic-flag cat');
    my $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'generic flagged');
    like($e->{message}, qr/\(categories: violence, self-harm\/intent\)\.$/,
        'generic flagged: its categories');
    mod_is($r, { result => 'flagged',
        categories => 'violence,self-harm/intent' }, 'generic flagged');

    $r = call('generic', 'generic-openai cat');
    unavailable($r, 'generic: an OpenAI-shaped answer is garbage');
}

# local checks first: what they reject is never sent

{
    my $r = call('deny', 'a nude figure');
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', 'deny rule');
    is(scalar modapi_requests(), 0, 'deny rule: the service is not asked');
    mod_is($r, { result => 'skipped', cached => '', ms => '',
        rules => 'r_nude' }, 'deny rule');

    $r = call('deny', undef,
        body => '{"prompt":"a cat","moderation":"low"}');
    is_rejection($r, 400, 'gi2_moderation_exception_required', 'moderation',
        'moderation low');
    is(scalar modapi_requests(), 0,
        'moderation low: the service is not asked');
    mod_is($r, { result => 'skipped' }, 'moderation low');

    $r = call('deny', undef, body => '{"prompt":"a cat"',
        headers => []);
    is_rejection($r, 400, 'gi2_invalid_request', undef, 'invalid JSON');
    is(scalar modapi_requests(), 0, 'invalid JSON: not asked');
    mod_is($r, { result => 'skipped' }, 'invalid JSON');

    $r = call('deny', undef, body => '{"model":"gpt-image-1"}');
    is_rejection($r, 400, 'gi2_invalid_request', 'prompt', 'no prompt');
    is(scalar modapi_requests(), 0, 'no prompt: not asked');
    mod_is($r, { result => 'skipped' }, 'no prompt');

    $r = call('deny', undef, body => '{"prompt":"","model":"gpt-image-1"}');
    forwarded($r, 'empty prompt');
    is(scalar modapi_requests(), 0, 'empty prompt: nothing to ask about');
    mod_is($r, { result => 'skipped' }, 'empty prompt');

    # a flag rule and the service both have their say
    $r = call('deny', 'a toy gun');
    forwarded($r, 'flag rule, clean');
    mod_is($r, { decision => 'flag', rules => 'f_gun', result => 'clean' },
        'flag rule, clean');

    $r = call('deny', 'a violent gun');
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'flag rule, flagged');
    mod_is($r, { rules => 'f_gun', result => 'flagged' },
        'flag rule, flagged');

    $r = call('rewrite', undef,
        body => '{"prompt":"a cat","moderation":"low"}');
    is($r->{status}, 200, 'rewrite: forwarded');
    is((upstream_requests())[0]{body}, '{"prompt":"a cat","moderation":'
        . '"auto"}', 'rewrite: rewritten');
    is(one_call('rewrite')->{json}{input}, 'a cat', 'rewrite: asked');
    mod_is($r, { decision => 'rewrite', result => 'clean' }, 'rewrite');
}

# the images of an edit, with gi2_moderation_images on

{
    my $png = 'data:image/png;base64,' . ('iVBORw0KGgo' x 3000) . '=';
    my $edit = json_encode({ model => 'gpt-image-1', prompt => 'make it blue',
        images => [{ file_id => 'file-abc' }, { image_url => $png },
            { image_url => 'https://example.test/second.png' }],
        mask => { image_url => 'data:image/png;base64,bWFzaw==' } });
    upstream_reset();
    modapi_reset();
    my $r = http_post('/images/v1/images/edits', $edit);
    is($r->{status}, 200, 'edit with images: forwarded');
    is((upstream_requests())[0]{body}, $edit,
        'edit with images: upstream got it as sent');
    my $m = one_call('edit with images');
    is_deeply($m->{json}{input}, [{ type => 'text', text => 'make it blue' },
        { type => 'image_url', image_url => { url => $png } }],
        'edit with images: the text and the first image URL (from a body '
        . 'in a temporary file)');
    like(error_log(), qr/gi2: moderation service: 1 of 2 images of the edit sent/,
        'edit with images: the error log says what was not sent');

    modapi_reset();
    $r = http_post('/images/v1/images/edits', $edit);
    is(scalar modapi_requests(), 1, 'edit with images: not cached');
    mod_is($r, { cached => '0' }, 'edit with images: not cached');

    modapi_reset();
    $r = http_post('/images/v1/images/edits', json_encode({
        prompt => 'only ids', images => [{ file_id => 'file-abc' }] }));
    is(one_call('edit with file ids')->{json}{input}, 'only ids',
        'edit with only file ids: the text alone');

    modapi_reset();
    $r = http_post('/images/v1/images/generations',
        json_encode({ prompt => 'a cat', images => [{ image_url => $png }] }));
    is(one_call('generation')->{json}{input}, 'a cat',
        'a generation: the text alone');

    modapi_reset();
    $r = http_post('/deny/v1/images/edits', $edit);
    is(one_call('images off')->{json}{input}, 'make it blue',
        'gi2_moderation_images off (the default): the text alone');

    modapi_reset();
    $r = http_post('/genimages/v1/images/edits',
        json_encode({ prompt => 'generic-clean edit',
            images => [{ image_url => $png }] }));
    is_deeply([sort keys %{ one_call('generic')->{json} }],
        [qw(consumer model prompt)], 'format=generic: no images');
}

# where the service is not in play

{
    my $r = call('off', 'a violent scene');
    forwarded($r, 'gi2_moderation_api off');
    is(scalar modapi_requests(), 0, 'off: not asked');
    mod_is($r, { result => '', cached => '', categories => '', ms => '' },
        'off');

    $r = call('gi2off', 'a violent scene');
    forwarded($r, 'gi2 off');
    is(scalar modapi_requests(), 0, 'gi2 off: not asked');
    mod_is($r, { result => '' }, 'gi2 off');

    upstream_reset();
    modapi_reset();
    $r = http_get('/deny/v1/models');
    is($r->{status}, 200, 'GET: passed');
    is(scalar modapi_requests(), 0, 'GET: not asked');
    mod_is($r, { result => '' }, 'GET');
}

# every way of failing, closed (503) and open (forwarded, recorded)

{
    my @fail = (
        ['slow', 'slowpoke', 'timeout', qr/no answer in time/],
        ['500', 'boom500', 'error', qr/not a 200 answer \(HTTP status 500/],
        ['429', 'boom429', 'error', qr/HTTP status 429/],
        ['malformed JSON', 'garbage', 'error', qr/not valid JSON/],
        ['empty results', 'shape', 'error', qr/no results\[0\] object/],
        ['HTML', 'htmlpage', 'error', qr/not valid JSON/],
        ['huge, with length', 'huge', 'error', qr/over 65536 bytes/],
        ['huge, streamed', 'hugestream', 'error', qr/over 65536 bytes/],
        ['reset', 'resetme', 'error', qr/reset|Recv failure/i],
        ['closed', 'closeme', 'error',
            qr/Empty reply|Server returned nothing/i],
        ['redirect', 'redirect', 'error', qr/HTTP status 302/],
    );
    for my $f (@fail) {
        my ($name, $word, $result, $why) = @$f;
        my $before = length error_log();
        my $r = call('deny', "$word cat");
        unavailable($r, "closed, $name");
        one_call("closed, $name");
        mod_is($r, { status => 503, decision => 'reject',
            code => 'gi2_moderation_unavailable', result => $result,
            cached => '', categories => '' }, "closed, $name");
        like(substr(error_log(), $before),
            qr/\[warn\].*gi2: moderation service: .*$why.*failing closed/,
            "closed, $name: the error log says why");

        $r = call('open', "$word dog");
        forwarded($r, "open, $name");
        mod_is($r, { status => 200, decision => 'allow', code => '',
            result => $result }, "open, $name");
    }

    my $r = call('redirect', 'redirect once');
    is(scalar modapi_requests(), 1, 'redirect: not followed');

    $r = call('down', 'a cat');
    unavailable($r, 'down, closed');
    mod_is($r, { result => 'error' }, 'down, closed');
    like(error_log(), qr/gi2: moderation service: .*(refused|connect)/i,
        'down: the error log says why');

    $r = call('downopen', 'a cat');
    forwarded($r, 'down, open');
    mod_is($r, { decision => 'allow', result => 'error' }, 'down, open');

    my $a = audit_for($r);
    is($a->{error}, undef, 'down, open: an audit record');
    is_deeply([map { rec_get($a->{rec}, "gi2.moderation.$_") }
        qw(result cached flagged_categories)], ['error', undef, []],
        'down, open: the record says the check did not happen');
    like(rec_get($a->{rec}, 'gi2.moderation.ms'), qr/^\d+$/,
        'down, open: ms in the record');
}

# TLS: verified against the configured CA; without it, refused

SKIP: {
    skip 'no openssl to make a certificate', 12 unless $have_tls;

    my $r = call('tls', 'a cat over tls');
    forwarded($r, 'TLS with the CA');
    is(one_call('TLS')->{json}{input}, 'a cat over tls',
        'TLS: the service got it');

    $r = call('tlsname', 'a cat by name');
    forwarded($r, 'TLS to a name');

    my $before = length error_log();
    $r = call('tlsbad', 'a cat');
    unavailable($r, 'TLS, a certificate the system does not trust');
    like(substr(error_log(), $before),
        qr/gi2: moderation service: .*(certificate|SSL)/i,
        'TLS: the error log says the certificate was refused');
}

# the audit record of a flagged request

{
    my $r = call('deny', 'a violent scene');
    my $a = audit_for($r);
    is($a->{error}, undef, 'record: written');
    is_deeply([map { rec_get($a->{rec}, $_) } qw(gi2.moderation.result
        gi2.moderation.cached gi2.moderation.flagged_categories
        gi2.reject_code error.type)],
        ['flagged', 'false', ['violence'], 'gi2_prompt_rejected',
         'invalid_request_error'], 'record: the verdict');

    $r = call('deny', 'boom500 again');
    $a = audit_for($r);
    is_deeply([map { rec_get($a->{rec}, $_) } qw(gi2.moderation.result
        gi2.reject_code error.type event.type)],
        ['error', 'gi2_moderation_unavailable', 'server_error',
         ['access', 'denied']], 'record: unavailable');
}

# gi2_metrics counts the service's verdicts once a request, as the
# variables have them: every mod.log line against the counters

{
    my $m = http_get('/status');
    is($m->{status}, 200, 'metrics: scraped');
    my %got;
    for my $l (split /\n/, $m->{body} // '') {
        $got{$1} = $2
            if $l =~ /^gi2_external_moderation_total\{result="(\w+)"\} (\d+)$/;
    }
    my %want = map { $_ => 0 } qw(allow flag deny error timeout);
    for my $l (split /\n/, read_file(prefix() . '/mod.log') // '') {
        my %e;
        @e{@MOD_FIELDS} = split /\|/, $l, -1;
        next unless defined $e{result};
        if ($e{result} eq 'clean') {
            $want{allow}++;
        } elsif ($e{result} eq 'flagged') {
            $want{$e{decision} eq 'reject' ? 'deny' : 'flag'}++;
        } elsif ($e{result} eq 'error' || $e{result} eq 'timeout') {
            $want{$e{result}}++;
        }
    }
    ok($want{allow} && $want{deny} && $want{flag} && $want{error}
        && $want{timeout}, 'metrics: every result was seen in this file')
        or diag(explain(\%want));
    is_deeply(\%got, \%want,
        'metrics: gi2_external_moderation_total agrees with the log');
    my ($count) = ($m->{body} // '')
        =~ /^gi2_external_moderation_duration_seconds_count (\d+)$/m;
    my $all = 0;
    $all += $_ for values %want;
    is($count, $all, 'metrics: every verdict in the duration histogram');
}

# the key is in no log

{
    my $p = prefix();
    for my $log (qw(error.log access.log mod.log audit.log vars.log)) {
        my $text = read_file("$p/$log") // '';
        ok(length $text && index($text, $KEY) < 0,
            "the key is not in $log");
    }
}

error_log_clean();
done_testing();
