#!/usr/bin/perl

# The audit record ($gi2_log_json) against docs/elk: every record nginx
# writes for a spread of real-shaped exchanges (images, n=2, a streamed
# answer, gzip, URLs, upstream errors, an upstream that is down, gi2's
# own rejections) is one line of valid JSON without duplicate keys, and
# every key path in it is mapped by docs/elk/index-template.json with a
# type that accepts the value.  The other way round, nothing the template
# maps for the record is stale: each mapped field shows up, with a value,
# in some record.  The static files (pipeline, ILM policy, filebeat.yml)
# are checked for the settings docs/elk/README.md relies on.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Compress::Zlib qw(compress crc32);
use Digest::SHA qw(sha256_hex);
use IO::Compress::Gzip qw(gzip $GzipError);
use MIME::Base64 qw(encode_base64);
use IO::Select;
use IO::Socket::UNIX;
use Time::HiRes qw(sleep time);

my $ELK = repo_root() . '/docs/elk';
my $JSON = JSON::PP->new->utf8->allow_nonref;

sub load_json {
    my ($name) = @_;
    my $text = read_file("$ELK/$name");
    ok(defined $text, "$name exists") or return undef;
    my $v = eval { $JSON->decode($text) };
    ok(ref $v eq 'HASH', "$name is a JSON object") or diag($@);
    return $v;
}

###########################################################################
# the template's fields: dotted path -> mapping

# Fields the template maps that the module does not write: Filebeat's own,
# the data stream's, the ingest pipeline's and the ndjson parser's error.
my %SHIPPER = map { $_ => 1 } qw(
    message tags labels labels.gi2_prompt_text
    data_stream data_stream.type data_stream.dataset data_stream.namespace
    agent agent.id agent.ephemeral_id agent.name agent.type agent.version
    host host.name host.hostname input input.type
    log log.offset log.file log.file.path log.file.inode log.file.device_id
    event.ingested error.message
);

# Written only in some configurations or situations, so possibly never
# with a value here.
my %RARE = map { $_ => 1 } qw(gi2.record_overflow);

# Values that come from the client's JSON as sent: their JSON type is the
# client's (a string "n", a numeric "size"), so the mapping must take any.
my %CLIENT_TYPED = map { $_ => 1 } qw(
    gen_ai.request.model gen_ai.request.choice.count
    gi2.request.size gi2.request.quality gi2.request.n
);

sub template_fields {
    my ($props, $prefix, $out) = @_;
    for my $k (sort keys %$props) {
        my $m = $props->{$k};
        my $p = $prefix eq '' ? $k : "$prefix.$k";
        if ($m->{properties}) {
            $out->{$p} = { %$m, type => $m->{type} // 'object' };
            delete $out->{$p}{properties};
            template_fields($m->{properties}, $p, $out);
        } else {
            $out->{$p} = $m;
        }
    }
    return $out;
}

###########################################################################
# static checks of docs/elk

my $tpl = load_json('index-template.json');
my $pipe = load_json('ingest-pipeline.json');
my $ilm = load_json('ilm-policy.json');
my %MAP;

SKIP: {
    skip 'no template', 9 unless $tpl;
    is_deeply($tpl->{index_patterns}, ['logs-gi2.audit-*'],
        'template: index pattern logs-gi2.audit-*');
    is_deeply($tpl->{data_stream}, {}, 'template: a data stream template');
    ok(($tpl->{priority} // 0) > 200,
        'template: priority above the built-in logs template (200)');
    my $s = $tpl->{template}{settings} || {};
    is($s->{'index.lifecycle.name'}, 'gi2-audit', 'template: ILM gi2-audit');
    is($s->{'index.default_pipeline'}, 'gi2-audit',
        'template: default pipeline gi2-audit');
    my $m = $tpl->{template}{mappings} || {};
    ok(defined $m->{dynamic} && !$m->{dynamic} && $m->{dynamic} ne 'strict',
        'template: dynamic false (unknown fields kept, not indexed)');
    %MAP = %{ template_fields($m->{properties} || {}, '', {}) };
    is($MAP{'@timestamp'}{type}, 'date', 'template: @timestamp is a date');
    is($MAP{'gi2.prompt.text'}{type}, 'text',
        'template: gi2.prompt.text is text');
    ok(exists $MAP{'gi2.prompt.text'}{index}
        && !$MAP{'gi2.prompt.text'}{index},
        'template: gi2.prompt.text is not searchable');
}

SKIP: {
    skip 'no pipeline', 3 unless $pipe;
    my @p = @{ $pipe->{processors} || [] };
    ok((grep { $_->{set} && $_->{set}{field} eq 'event.ingested' } @p),
        'pipeline: sets event.ingested');
    my ($rm) = grep { $_->{remove} } @p;
    ok($rm && $rm->{remove}{field} eq 'gi2.prompt.text'
        && $rm->{remove}{ignore_missing}
        && ($rm->{remove}{if} // '') =~ /labels.*gi2_prompt_text.*'drop'/,
        'pipeline: removes gi2.prompt.text when labels.gi2_prompt_text is '
        . 'drop');
    ok(ref $pipe->{on_failure} eq 'ARRAY', 'pipeline: has on_failure');
}

SKIP: {
    skip 'no ILM policy', 3 unless $ilm;
    my $ph = $ilm->{policy}{phases} || {};
    ok($ph->{hot}{actions}{rollover}, 'ILM: hot phase rolls over');
    my ($days) = ($ph->{delete}{min_age} // '') =~ /^(\d+)d$/;
    ok($days && $days >= 1095 && $days <= 1100,
        'ILM: deleted at 36 months (' . ($ph->{delete}{min_age} // '?')
        . ')');
    ok($ph->{delete}{actions}{delete}, 'ILM: delete action');
}

{
    my $fb = read_file("$ELK/filebeat.yml") // '';
    my @want = (
        'a filestream input' => qr/^\s*-\s*type:\s*filestream\s*$/m,
        'the ndjson parser' => qr/^\s*-\s*ndjson:\s*$/m,
        'target ""' => qr/^\s*target:\s*""\s*$/m,
        'overwrite_keys' => qr/^\s*overwrite_keys:\s*true\s*$/m,
        'add_error_key' => qr/^\s*add_error_key:\s*true\s*$/m,
        'the data stream index'
            => qr/^\s*index:\s*"logs-gi2\.audit-default"\s*$/m,
        'the pipeline' => qr/^\s*pipeline:\s*gi2-audit\s*$/m,
        'data_stream.type' => qr/^\s*type:\s*logs\s*$/m,
        'data_stream.dataset' => qr/^\s*dataset:\s*gi2\.audit\s*$/m,
        'data_stream.namespace' => qr/^\s*namespace:\s*default\s*$/m,
        'prompt text dropped' => qr/^\s*gi2_prompt_text:\s*drop\s*$/m,
    );
    while (my ($what, $re) = splice @want, 0, 2) {
        like($fb, $re, "filebeat.yml: $what");
    }
}

###########################################################################
# a JSON reader that keeps what JSON::PP loses: duplicate keys, and
# whether a number was written as an integer or with a fraction

sub typed_parse {
    my ($s) = @_;
    my $str = qr/"(?:[^"\\]++|\\.)*+"/s;
    my $value;
    $value = sub {
        $s =~ /\G[ \t\r\n]*/gc;
        if ($s =~ /\G\{/gc) {
            my (@pairs, %seen);
            $s =~ /\G[ \t\r\n]*/gc;
            return { t => 'object', pairs => [] } if $s =~ /\G\}/gc;
            while (1) {
                $s =~ /\G[ \t\r\n]*($str)[ \t\r\n]*:/gc
                    or die 'key expected at ' . (pos($s) // 0) . "\n";
                my $k = $JSON->decode($1);
                die "duplicate key \"$k\"\n" if $seen{$k}++;
                push @pairs, [$k, $value->()];
                $s =~ /\G[ \t\r\n]*/gc;
                next if $s =~ /\G,/gc;
                last if $s =~ /\G\}/gc;
                die 'bad object at ' . (pos($s) // 0) . "\n";
            }
            return { t => 'object', pairs => \@pairs };
        }
        if ($s =~ /\G\[/gc) {
            my @items;
            $s =~ /\G[ \t\r\n]*/gc;
            return { t => 'array', items => [] } if $s =~ /\G\]/gc;
            while (1) {
                push @items, $value->();
                $s =~ /\G[ \t\r\n]*/gc;
                next if $s =~ /\G,/gc;
                last if $s =~ /\G\]/gc;
                die 'bad array at ' . (pos($s) // 0) . "\n";
            }
            return { t => 'array', items => \@items };
        }
        return { t => 'string', v => $JSON->decode($1) } if $s =~ /\G($str)/gc;
        return { t => 'integer', v => $1 }
            if $s =~ /\G(-?(?:0|[1-9][0-9]*))(?![.eE0-9])/gc;
        return { t => 'float', v => $1 }
            if $s =~ /\G(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)/gc;
        return { t => 'boolean', v => $1 } if $s =~ /\G(true|false)/gc;
        return { t => 'null' } if $s =~ /\Gnull/gc;
        die 'value expected at ' . (pos($s) // 0) . "\n";
    };
    my $v = $value->();
    $s =~ /\G[ \t\r\n]*/gc;
    die "trailing data\n" if (pos($s) // 0) != length $s;
    return $v;
}

# Flattens a typed tree: objects give dotted paths, arrays of scalars
# their own path, arrays of objects their path and their keys below it.
# $out->{path} = { types => {type => count}, values => [...] }
sub flatten {
    my ($n, $path, $out) = @_;
    my $e = $path eq '' ? {} : ($out->{$path} ||= { types => {} });
    if ($n->{t} eq 'object') {
        $e->{types}{object}++;
        for my $pair (@{ $n->{pairs} }) {
            flatten($pair->[1], $path eq '' ? $pair->[0] : "$path.$pair->[0]",
                $out);
        }
    } elsif ($n->{t} eq 'array') {
        $e->{array}++;
        $e->{types}{'empty array'}++ unless @{ $n->{items} };
        my %kinds;
        for my $i (@{ $n->{items} }) {
            $kinds{ $i->{t} eq 'object' ? 'object' : 'scalar' }++;
            $e->{types}{'nested array'}++ if $i->{t} eq 'array';
            flatten($i, $path, $out);
        }
        $e->{types}{'mixed array'}++ if keys %kinds > 1;
    } else {
        $e->{types}{ $n->{t} }++;
        push @{ $e->{values} }, $n->{v} if $n->{t} ne 'null';
    }
    return $out;
}

###########################################################################
# does a mapping take this JSON value?

my %ACCEPTS = (
    string  => { map { $_ => 1 } qw(keyword constant_keyword wildcard text
                    match_only_text ip date date_nanos version) },
    integer => { map { $_ => 1 } qw(long integer short byte unsigned_long
                    scaled_float double float half_float) },
    float   => { map { $_ => 1 } qw(double float half_float scaled_float) },
    boolean => { map { $_ => 1 } qw(boolean) },
    object  => { map { $_ => 1 } qw(object nested) },
);

my %INT_MAX = (long => 9223372036854775807, integer => 2147483647,
    short => 32767, byte => 127);

sub valid_ip {
    my ($v) = @_;
    return 1 if $v =~ /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
        && !grep { $_ > 255 } $1, $2, $3, $4;
    return $v =~ /^[0-9a-fA-F:.]+$/ && $v =~ /:/;
}

# Problems of one path: () when the mapping takes every value seen.
sub mapping_problems {
    my ($path, $e) = @_;
    my $m = $MAP{$path};
    return ("not mapped") unless $m;
    my $mt = $m->{type} // 'object';
    my @bad;
    for my $t (sort keys %{ $e->{types} }) {
        next if $t eq 'null' || $t eq 'empty array';
        if ($t eq 'nested array' || $t eq 'mixed array') {
            push @bad, "a $t";
            next;
        }
        if ($ACCEPTS{$t}{$mt}) {
            next;
        }
        # a number in a keyword field is indexed as its text
        if (($t eq 'integer' || $t eq 'float') && $mt eq 'keyword'
            && $CLIENT_TYPED{$path})
        {
            next;
        }
        # a string in a numeric field: coerced when numeric, else it
        # needs ignore_malformed or the whole document is rejected
        if ($t eq 'string' && $ACCEPTS{integer}{$mt}) {
            my @nonnum = grep { !/^-?\d+(\.\d+)?$/ } @{ $e->{values} || [] };
            next if !@nonnum || $m->{ignore_malformed};
            push @bad, "non-numeric string '$nonnum[0]' in $mt without "
                . 'ignore_malformed';
            next;
        }
        push @bad, "$t value in a $mt field";
    }
    for my $v (@{ $e->{values} || [] }) {
        if ($mt eq 'ip' && !valid_ip($v) && !$m->{ignore_malformed}) {
            push @bad, "'$v' is not an IP address";
        }
        if ($mt eq 'date' && $v !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[-+]\d\d:\d\d)$/) {
            push @bad, "'$v' is not an ISO-8601 date";
        }
        if (($mt eq 'keyword' || $mt eq 'wildcard') && $m->{ignore_above}
            && length($v) > $m->{ignore_above})
        {
            push @bad, length($v) . " chars over ignore_above "
                . "$m->{ignore_above}";
        }
        if ($INT_MAX{$mt} && $v =~ /^-?\d+$/
            && (length($v) > 19 || abs($v) > $INT_MAX{$mt}))
        {
            push @bad, "$v out of range for $mt";
        }
    }
    return @bad;
}

###########################################################################
# nginx

if (!have_module() || !-x ($ENV{GI2_NGINX} || '/usr/sbin/nginx')) {
    note('module not built: the records are not checked');
    done_testing();
    exit 0;
}

sub png_chunk {
    my ($type, $data) = @_;
    return pack('N', length $data) . $type . $data
        . pack('N', crc32($type . $data));
}

# A real RGB PNG of w x h red pixels, with a C2PA (caBX) chunk if asked.
sub png {
    my ($w, $h, %o) = @_;
    my $raw = join '', map { "\0" . ("\xff\x00\x00" x $w) } 1 .. $h;
    return "\x89PNG\r\n\x1a\n"
        . png_chunk('IHDR', pack('NNCCCCC', $w, $h, 8, 2, 0, 0, 0))
        . ($o{c2pa} ? png_chunk('caBX', "\0\0\0\x10jumb\0\0\0\x08jumd")
                    : '')
        . png_chunk('IDAT', compress($raw))
        . png_chunk('IEND', '');
}

my $PNG1 = png(2, 3);
my $PNG2 = png(4, 4, c2pa => 1);
my $PNGP = png(1, 1);
my $B64_1 = encode_base64($PNG1, '');
my $B64_2 = encode_base64($PNG2, '');
my $B64_P = encode_base64($PNGP, '');

my $USAGE = '{"total_tokens":4210,"input_tokens":50,"output_tokens":4160,'
    . '"input_tokens_details":{"text_tokens":40,"image_tokens":10},'
    . '"output_tokens_details":{"text_tokens":0,"image_tokens":4160}}';
my $COST = (50 * 5 + 4160 * 40) / 1e6;

my $JSON_CT = [['Content-Type', 'application/json'],
    ['x-request-id', 'req_gi2_test']];

write_file('gi2.key', "0123456789abcdef0123456789abcdef\n");

# the external moderation service: a mock that flags "violent"
modapi_set(default => { json => modapi_answer(0, { violence => [0, 0.01] }) },
    match => [['violent', { json => modapi_answer(1,
        { violence => [1, 0.93], hate => [0, 0.02] }) }]]);

my $CONF = <<'EOF';
    map $gi2_decision $gi2_audit {
        ""       0;
        default  1;
    }

    log_format gi2 escape=none '$gi2_log_json';

    server {
        listen 127.0.0.1:%%PORT%%;
        listen unix:%%PREFIX%%/gi2.sock;

        access_log %%PREFIX%%/access.log gi2test;
        access_log %%PREFIX%%/gi2-audit.log gi2 if=$gi2_audit;
        access_log %%PREFIX%%/gi2-raw.log gi2;

        gi2 on;
        gi2_hash_key_file %%PREFIX%%/gi2.key;
        gi2_price gpt-image-1 input=5 output=40;
        gi2_rule r_nude deny sexual "\bnude\b";
        gi2_rule f_gun flag weapons "\bgun\b";
        gi2_exception EXC-1;

        location / {
            proxy_pass http://%%UPSTREAM%%;
        }

        location /logprompt/ {
            gi2_log_prompt on;
            proxy_pass http://%%UPSTREAM%%;
        }

        location /down/ {
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location /modapi/ {
            gi2_moderation_api http://%%MODAPI%%/v1/moderations;
            gi2_moderation_cache zone=elk_verdicts:1m;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF
my $MODAPI = modapi_addr();
$CONF =~ s/%%MODAPI%%/$MODAPI/g;
gi2_start($CONF);

my $AUDIT = prefix() . '/gi2-audit.log';
my $RAW = prefix() . '/gi2-raw.log';
my $GEN = '/v1/images/generations';

# The lines of a log; an empty line counts (it is not JSON either).
sub lines_of {
    my ($path) = @_;
    my @l = split /\n/, read_file($path) // '', -1;
    pop @l if @l && $l[-1] eq '';
    return @l;
}

# A request over the unix socket listener.
sub unix_post {
    my ($path, $body, @hdrs) = @_;
    my ($req, $id) = request_bytes('POST', $path, $body, @hdrs);
    my $s = IO::Socket::UNIX->new(Peer => prefix() . '/gi2.sock')
        or die "unix connect: $!";
    syswrite($s, $req);
    my $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(10)) {
        my $n = sysread($s, $out, 65536, length $out);
        last unless $n;
    }
    close $s;
    my $res = parse_response($out);
    $res->{id} = $id;
    return $res;
}

# JSON::PP values made comparable: booleans as 'true' / 'false'.
sub plain {
    my ($v) = @_;
    return [map { plain($_) } @$v] if ref $v eq 'ARRAY';
    return { map { $_ => plain($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return $v ? 'true' : 'false' if JSON::PP::is_bool($v);
    return $v;
}

sub jget {
    my ($obj, $path) = @_;
    my $v = $obj;
    for my $k (split /\./, $path) {
        return undef unless ref $v eq 'HASH' && exists $v->{$k};
        $v = $v->{$k};
    }
    return plain($v);
}

my (@RECORDS, %FIELDS, %SHAPES);
my $seen = 0;

sub run_case {
    my (%c) = @_;
    my $name = $c{name};
    upstream_reset();
    upstream_response(%{ $c{upstream} || {} });
    my $res = ($c{method} // 'POST') eq 'GET'
        ? http_get($c{path}, @{ $c{headers} || [] })
        : $c{unix} ? unix_post($c{path}, $c{body}, @{ $c{headers} || [] })
        : http_post($c{path}, $c{body}, @{ $c{headers} || [] });
    is($res->{status}, $c{status}, "$name: status $c{status}")
        or diag('response: ' . substr($res->{raw} // '', 0, 300));
    log_for($res);

    my @l;
    my $want = $seen + ($c{no_record} ? 0 : 1);
    my $end = time() + 10;
    while (1) {
        @l = lines_of($AUDIT);
        last if @l >= $want || time() > $end;
        sleep(0.02);
    }

    if ($c{no_record}) {
        sleep(0.2);
        @l = lines_of($AUDIT);
        is(scalar @l, $seen, "$name: no audit record");
        return undef;
    }

    is(scalar @l, $want, "$name: one audit record") or return undef;
    $seen = @l;
    my $line = $l[-1];

    my $obj = eval { $JSON->decode($line) };
    ok(ref $obj eq 'HASH', "$name: JSON::PP parses the record")
        or diag("$@\nrecord: " . substr($line, 0, 2000));
    my $typed = eval { typed_parse($line) };
    ok($typed && $typed->{t} eq 'object',
        "$name: one JSON object, no duplicate keys")
        or diag($@);
    return undef unless ref $obj eq 'HASH' && $typed;

    ok($line !~ /[\x00-\x1f]/, "$name: a single line, no raw controls");

    my $flat = flatten($typed, '', {});
    push @RECORDS, { name => $name, line => $line, obj => $obj,
        flat => $flat };
    $SHAPES{ join ' ', grep { $_ !~ /^gi2\.images\.items\./ && $_ ne
        'gi2.prompt.text' } sort keys %$flat }{$name} = 1;

    for my $p (keys %$flat) {
        my $f = $FIELDS{$p} ||= { types => {}, values => [], cases => {} };
        $f->{types}{$_} += $flat->{$p}{types}{$_}
            for keys %{ $flat->{$p}{types} };
        push @{ $f->{values} }, @{ $flat->{$p}{values} || [] };
        $f->{cases}{$name} = 1;
        $f->{valued} = 1 if grep { $_ ne 'null' && $_ ne 'empty array' }
            keys %{ $flat->{$p}{types} };
    }

    my %got;
    for my $p (sort keys %{ $c{expect} || {} }) {
        $got{$p} = jget($obj, $p);
    }
    is_deeply(\%got, $c{expect} || {}, "$name: record values")
        or diag('record: ' . substr($line, 0, 3000));

    $c{check}->($obj, $line) if $c{check};
    return $obj;
}

sub is_hmac {
    my ($v, $name) = @_;
    like($v // '', qr/^hmac-sha256:[0-9a-f]{64}$/, "$name: an HMAC-SHA256");
}

# 1. one image, b64_json, with the prompt logged

run_case(
    name => 'one image, prompt logged',
    path => "/logprompt$GEN",
    body => '{"model":"gpt-image-1","prompt":"a red square","n":1,'
        . '"size":"1024x1024","quality":"high","moderation":"auto",'
        . '"stream":false}',
    headers => [Authorization => 'Bearer sk-test-1',
        'X-Stainless-Retry-Count' => '1'],
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1713833628,"background":"opaque",)
            . qq("data":[{"b64_json":"$B64_1"}],"output_format":"png",)
            . qq("quality":"high","size":"1024x1024","usage":$USAGE}) },
    status => 200,
    expect => {
        'ecs.version' => '9.0.0',
        'event.kind' => 'event',
        'event.category' => ['web'],
        'event.type' => ['access', 'allowed'],
        'event.action' => 'allow',
        'event.outcome' => 'success',
        'event.reason' => undef,
        'event.dataset' => 'gi2.audit',
        'http.request.method' => 'POST',
        'http.response.status_code' => 200,
        'url.path' => "/logprompt$GEN",
        'client.ip' => '127.0.0.1',
        'rule.id' => [],
        'error.type' => undef,
        'gen_ai.operation.name' => 'image_generation',
        'gen_ai.request.model' => 'gpt-image-1',
        'gen_ai.request.choice.count' => 1,
        'gen_ai.output.type' => 'image',
        'gen_ai.usage.input_tokens' => 50,
        'gen_ai.usage.output_tokens' => 4160,
        'gi2.decision' => 'allow',
        'gi2.prompt.text' => 'a red square',
        'gi2.prompt.length' => 12,
        'gi2.request.size' => '1024x1024',
        'gi2.request.quality' => 'high',
        'gi2.request.n' => 1,
        'gi2.request.stream' => 'false',
        'gi2.moderation.requested' => 'auto',
        'gi2.moderation.effective' => 'auto',
        'gi2.upstream.status' => 200,
        'gi2.upstream.request_id' => 'req_gi2_test',
        'gi2.response.inspected' => 'true',
        'gi2.response.stream' => 'false',
        'gi2.response.truncated' => 'false',
        'gi2.response.malformed' => 'false',
        'gi2.images.count' => 1,
        'gi2.images.items' => [{ sha256 => sha256_hex($PNG1),
            bytes => length $PNG1, format => 'png', width => 2,
            height => 3, c2pa => 'false', truncated => 'false',
            bad_base64 => 'false' }],
        'gi2.usage.total_tokens' => 4210,
        'gi2.usage.input_text_tokens' => 40,
        'gi2.usage.input_image_tokens' => 10,
        'gi2.usage.output_image_tokens' => 4160,
        'gi2.retry_count' => 1,
    },
    check => sub {
        my ($o) = @_;
        is_hmac(jget($o, 'gi2.prompt.hash'), 'prompt hash');
        is_hmac(jget($o, 'user.hash'), 'user hash');
        like(jget($o, '@timestamp'),
            qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
            '@timestamp: UTC with milliseconds');
        like(jget($o, 'http.request.id'), qr/^[0-9a-f]{32}$/,
            'http.request.id is $request_id');
        is_deeply(jget($o, 'related.hash'), [jget($o, 'gi2.prompt.hash'),
            jget($o, 'user.hash'), sha256_hex($PNG1)],
            'related.hash: prompt, user, image');
        ok(abs((jget($o, 'gi2.cost.usd') // -1) - $COST) < 1e-6,
            "gi2.cost.usd is $COST");
        ok((jget($o, 'event.duration') // -1) >= 0
            && jget($o, 'event.duration') % 1000000 == 0,
            'event.duration: nanoseconds');
    },
);

# 2. the raw prompt, with characters JSON must escape

my $odd = "line1\nline2\t\"quoted\" back\\slash \x01 caf\xc3\xa9 \xe7\x8c\xab";
run_case(
    name => 'prompt text escaped',
    path => "/logprompt$GEN",
    body => $JSON->encode({ prompt => do { utf8::decode(my $s = $odd); $s },
        model => 'gpt-image-1' }),
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"}]}) },
    status => 200,
    expect => { 'gi2.prompt.text' => do { utf8::decode(my $s = $odd); $s },
        'gi2.prompt.length' => length $odd },
);

# 3. n=2, the second image with C2PA

run_case(
    name => 'two images',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"two red squares","n":2}',
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"},)
            . qq({"b64_json":"$B64_2"}],"usage":$USAGE}) },
    status => 200,
    expect => {
        'gi2.request.n' => 2,
        'gen_ai.request.choice.count' => 2,
        'gi2.images.count' => 2,
        'gi2.prompt.text' => undef,
        'user.hash' => undef,
    },
    check => sub {
        my ($o) = @_;
        my $items = jget($o, 'gi2.images.items');
        is_deeply([map { [$_->{sha256}, $_->{width}, $_->{c2pa}] } @$items],
            [[sha256_hex($PNG1), 2, 'false'],
             [sha256_hex($PNG2), 4, 'true']], 'two images: items');
    },
);

# 4. upstream moderation_blocked

run_case(
    name => 'upstream moderation_blocked',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"something borderline"}',
    upstream => { status => 400, headers => $JSON_CT,
        body => '{"error":{"message":"Your request was rejected by the '
            . 'safety system.","type":"image_generation_user_error",'
            . '"param":null,"code":"moderation_blocked",'
            . '"moderation_details":{"moderation_stage":"input",'
            . '"categories":["sexual","violence"]}}}' },
    status => 400,
    expect => {
        'event.type' => ['access', 'error'],
        'event.outcome' => 'failure',
        'event.action' => 'allow',
        'error.type' => 'image_generation_user_error',
        'error.code' => 'moderation_blocked',
        'gi2.decision' => 'allow',
        'gi2.upstream.status' => 400,
        'gi2.upstream.error.type' => 'image_generation_user_error',
        'gi2.upstream.error.code' => 'moderation_blocked',
        'gi2.upstream.error.param' => undef,
        'gi2.upstream.error.moderation_stage' => 'input',
        'gi2.upstream.error.categories' => ['sexual', 'violence'],
        'gi2.images.count' => 0,
        'gi2.images.items' => [],
        'gi2.cost.usd' => undef,
    },
);

# 5. upstream 400 with a param

run_case(
    name => 'upstream invalid_value',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a cat","size":"999x999"}',
    upstream => { status => 400, headers => $JSON_CT,
        body => '{"error":{"message":"Invalid value: \'999x999\'.",'
            . '"type":"invalid_request_error","param":"size",'
            . '"code":"invalid_value"}}' },
    status => 400,
    expect => {
        'error.code' => 'invalid_value',
        'gi2.upstream.error.param' => 'size',
        'gi2.upstream.error.categories' => [],
    },
);

# 6. upstream 500

run_case(
    name => 'upstream 500',
    path => $GEN,
    body => '{"prompt":"a cat"}',
    upstream => { status => 500, headers => $JSON_CT,
        body => '{"error":{"message":"The server had an error while '
            . 'processing your request.","type":"server_error",'
            . '"param":null,"code":null}}' },
    status => 500,
    expect => {
        'event.type' => ['access', 'error'],
        'event.outcome' => 'failure',
        'error.type' => 'server_error',
        'error.code' => undef,
        'gi2.upstream.status' => 500,
        'gen_ai.request.model' => undef,
        'gi2.request.n' => undef,
    },
);

# 7. upstream down

run_case(
    name => 'upstream down',
    path => "/down$GEN",
    body => '{"model":"gpt-image-1","prompt":"a cat"}',
    status => 502,
    expect => {
        'event.type' => ['access', 'error'],
        'event.outcome' => 'failure',
        'http.response.status_code' => 502,
        'gi2.upstream.status' => 502,
        'gi2.upstream.request_id' => undef,
        'gi2.response.inspected' => 'false',
        'gi2.response.stream' => undef,
        'gi2.images.count' => undef,
        'gen_ai.usage.input_tokens' => undef,
    },
);

# 8-10. gi2's own rejections

run_case(
    name => 'rejected: prompt rule',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a nude figure"}',
    status => 400,
    expect => {
        'event.type' => ['access', 'denied'],
        'event.action' => 'reject',
        'event.outcome' => 'failure',
        'event.reason' => 'gi2_prompt_rejected',
        'error.type' => 'invalid_request_error',
        'error.code' => 'gi2_prompt_rejected',
        'rule.id' => ['r_nude'],
        'rule.category' => ['sexual'],
        'gi2.decision' => 'reject',
        'gi2.reject_code' => 'gi2_prompt_rejected',
        'gi2.upstream.status' => undef,
        'gi2.response.inspected' => 'false',
        'gi2.moderation.effective' => undef,
    },
);

run_case(
    name => 'rejected: moderation low',
    path => $GEN,
    body => '{"prompt":"a cat","moderation":"low"}',
    status => 400,
    expect => {
        'gi2.reject_code' => 'gi2_moderation_exception_required',
        'gi2.moderation.requested' => 'low',
        'gi2.exception.id' => undef,
    },
);

run_case(
    name => 'rejected: invalid JSON',
    path => $GEN,
    body => '{"model":"gpt-image-1" "prompt":"a cat"}',
    status => 400,
    expect => {
        'event.reason' => 'gi2_invalid_request',
        'gi2.reject_code' => 'gi2_invalid_request',
        'gi2.prompt.length' => undef,
        'gi2.prompt.hash' => undef,
    },
);

# 11. an exception with bytes that are not UTF-8 and a quote

run_case(
    name => 'rejected: invalid exception header',
    path => $GEN,
    body => '{"prompt":"a cat","moderation":"low"}',
    headers => ['X-GI2-Exception' => "EXC-\xff\"x"],
    status => 400,
    expect => {
        'gi2.reject_code' => 'gi2_moderation_exception_invalid',
        'gi2.exception.presented' => "EXC-\x{fffd}\"x",
    },
);

# 12. moderation low with a valid exception, a flag rule

run_case(
    name => 'flag rule, exception',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a toy gun","moderation":"low"}',
    headers => ['X-GI2-Exception' => 'EXC-1'],
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"}]}) },
    status => 200,
    expect => {
        'event.type' => ['access', 'allowed'],
        'event.action' => 'flag',
        'rule.id' => ['f_gun'],
        'rule.category' => ['weapons'],
        'gi2.decision' => 'flag',
        'gi2.moderation.requested' => 'low',
        'gi2.moderation.effective' => 'low',
        'gi2.exception.id' => 'EXC-1',
        'gi2.exception.presented' => 'EXC-1',
    },
);

# 13. a streamed answer: a partial image, then the final one

my $sse = "event: image_generation.partial_image\n"
    . 'data: {"type":"image_generation.partial_image","b64_json":"'
    . $B64_P . '","created_at":1,"size":"1024x1024","quality":"high",'
    . '"background":"opaque","output_format":"png",'
    . "\"partial_image_index\":0}\n\n"
    . "event: image_generation.completed\n"
    . 'data: {"type":"image_generation.completed","b64_json":"' . $B64_1
    . '","created_at":1,"size":"1024x1024","quality":"high",'
    . '"background":"opaque","output_format":"png","usage":' . $USAGE
    . "}\n\n";

run_case(
    name => 'streamed answer',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a cat","stream":true,'
        . '"partial_images":1}',
    upstream => { status => 200, body => $sse,
        headers => [['Content-Type', 'text/event-stream']] },
    status => 200,
    expect => {
        'gi2.request.stream' => 'true',
        'gi2.response.stream' => 'true',
        'gi2.images.count' => 1,
        'gi2.images.partial_count' => 1,
        'gen_ai.usage.output_tokens' => 4160,
    },
);

# 14. gzip

my $plain = qq({"created":1,"data":[{"b64_json":"$B64_1"}],"usage":$USAGE});
gzip(\$plain => \my $gz) or die $GzipError;

run_case(
    name => 'gzip answer',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a cat"}',
    upstream => { status => 200, body => $gz,
        headers => [['Content-Type', 'application/json'],
            ['Content-Encoding', 'gzip']] },
    status => 200,
    expect => {
        'gi2.response.content_encoding' => 'gzip',
        'gi2.response.inspected' => 'true',
        'gi2.images.count' => 1,
    },
);

# 15. URLs, a model without a price

run_case(
    name => 'url answer',
    path => $GEN,
    body => '{"model":"dall-e-3","prompt":"a cat","response_format":"url"}',
    upstream => { status => 200, headers => $JSON_CT,
        body => '{"created":1,"data":[{"url":"https://images.example.test/'
            . 'a.png","revised_prompt":"a cat, photo"}]}' },
    status => 200,
    expect => {
        'gen_ai.request.model' => 'dall-e-3',
        'gi2.images.url_count' => 1,
        'gi2.images.count' => 0,
        'gi2.cost.usd' => undef,
    },
);

# 16. the edits endpoint

run_case(
    name => 'image edit',
    path => '/v1/images/edits',
    body => '{"model":"gpt-image-1","prompt":"make it blue","images":'
        . '[{"image_url":"data:image/png;base64,' . $B64_1 . '"}]}',
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"}],)
            . qq("usage":$USAGE}) },
    status => 200,
    expect => { 'gen_ai.operation.name' => 'image_edit' },
);

# 16b. a multipart edit: two images and a mask, hashed as they pass

my $MPB = 'gi2-elk-0123456789';

sub mp_part {
    my ($name, $value, $filename) = @_;
    return "--$MPB\r\nContent-Disposition: form-data; name=\"$name\""
        . (defined $filename ? "; filename=\"$filename\"\r\n"
            . "Content-Type: image/png" : '')
        . "\r\n\r\n$value\r\n";
}

run_case(
    name => 'multipart edit',
    path => '/v1/images/edits',
    body => mp_part('model', 'gpt-image-1') . mp_part('image[]', $PNG1, 'a.png')
        . mp_part('prompt', 'make it blue') . mp_part('image[]', $PNG2, 'b.png')
        . mp_part('mask', $PNGP, 'm.png') . mp_part('n', '1')
        . mp_part('size', '1024x1024') . mp_part('moderation', 'auto')
        . "--$MPB--\r\n",
    headers => ['Content-Type' => "multipart/form-data; boundary=$MPB"],
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"}],)
            . qq("usage":$USAGE}) },
    status => 200,
    expect => {
        'gen_ai.operation.name' => 'image_edit',
        'gen_ai.request.model' => 'gpt-image-1',
        'gi2.request.n' => 1,
        'gi2.request.size' => '1024x1024',
        'gi2.moderation.requested' => 'auto',
        'gi2.prompt.length' => 12,
        'gi2.input_image.sha256' => [sha256_hex($PNG1), sha256_hex($PNG2),
            sha256_hex($PNGP)],
        'gi2.input_image.mask_sha256' => sha256_hex($PNGP),
    },
    check => sub {
        my ($o) = @_;
        is_deeply(jget($o, 'related.hash'), [jget($o, 'gi2.prompt.hash'),
            sha256_hex($PNG1), sha256_hex($PNG2), sha256_hex($PNGP),
            sha256_hex($PNG1)],
            'related.hash: prompt, input images and mask, output image');
    },
);

# 16c. the Responses API with its image_generation tool

run_case(
    name => 'responses with the image tool',
    path => '/v1/responses',
    body => '{"model":"gpt-5","input":"a red square","tools":[{"type":'
        . '"image_generation","size":"1024x1024","quality":"high",'
        . '"moderation":"auto"}]}',
    upstream => { status => 200, headers => $JSON_CT,
        body => '{"id":"resp_1","object":"response","output":[{"type":'
            . '"image_generation_call","id":"ig_1","status":"completed",'
            . qq("result":"$B64_1"}],"usage":{"input_tokens":10,)
            . '"output_tokens":20,"total_tokens":30}}' },
    status => 200,
    expect => {
        'gen_ai.operation.name' => 'responses',
        'gen_ai.request.model' => 'gpt-5',
        'gen_ai.output.type' => 'image',
        'gi2.decision' => 'allow',
        'gi2.prompt.length' => 12,
        'gi2.request.size' => '1024x1024',
        'gi2.request.quality' => 'high',
        'gi2.moderation.requested' => 'auto',
        'gi2.images.count' => 1,
        'gi2.input_image.sha256' => [],
        'gi2.input_image.mask_sha256' => undef,
    },
);

# 17. client values of unexpected JSON types are passed on as sent

run_case(
    name => 'client-typed values',
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a cat","n":"two",'
        . '"size":1024,"quality":null,"stream":"yes"}',
    upstream => { status => 400, headers => $JSON_CT,
        body => '{"error":{"message":"bad n","type":"invalid_request_error",'
            . '"param":"n","code":"invalid_type"}}' },
    status => 400,
    expect => {
        'gi2.request.n' => undef,
        'gen_ai.request.choice.count' => undef,
        'gi2.request.size' => '1024',
        'gi2.request.quality' => undef,
        'gi2.request.stream' => undef,
    },
);

# 18. a client on a unix socket has no IP address

run_case(
    name => 'unix socket client',
    unix => 1,
    path => $GEN,
    body => '{"model":"gpt-image-1","prompt":"a cat"}',
    upstream => { status => 200, headers => $JSON_CT,
        body => qq({"created":1,"data":[{"b64_json":"$B64_1"}]}) },
    status => 200,
    expect => { 'client.ip' => undef },
);

# 19-21. the external moderation service: flagged, clean, clean again
# from the cache

run_case(
    name => 'moderation service: flagged',
    path => "/modapi$GEN",
    body => '{"model":"gpt-image-1","prompt":"a violent cat"}',
    status => 400,
    expect => {
        'event.type' => ['access', 'denied'],
        'event.reason' => 'gi2_prompt_rejected',
        'gi2.reject_code' => 'gi2_prompt_rejected',
        'rule.id' => [],
        'gi2.moderation.result' => 'flagged',
        'gi2.moderation.cached' => 'false',
        'gi2.moderation.flagged_categories' => ['violence'],
        'gi2.upstream.status' => undef,
    },
    check => sub {
        my ($o) = @_;
        like(jget($o, 'gi2.moderation.ms') // 'null', qr/^\d+$/,
            'moderation service: ms is an integer');
    },
);

for my $cached ('false', 'true') {
    run_case(
        name => "moderation service: clean, cached $cached",
        path => "/modapi$GEN",
        body => '{"model":"gpt-image-1","prompt":"a calm cat"}',
        upstream => { status => 200, headers => $JSON_CT,
            body => qq({"created":1,"data":[{"b64_json":"$B64_1"}]}) },
        status => 200,
        expect => {
            'gi2.decision' => 'allow',
            'gi2.moderation.result' => 'clean',
            'gi2.moderation.cached' => $cached,
            'gi2.moderation.flagged_categories' => [],
        },
    );
}

{
    my $rec = $RECORDS[0]{obj};
    is_deeply([map { jget($rec, "gi2.moderation.$_") } qw(result cached
        flagged_categories ms)], [undef, undef, [], undef],
        'no moderation service in the location: its fields are null');
}

# 22. a request gi2 does not inspect still gets a record (no blank lines)

{
    my @raw_before = lines_of($RAW);
    run_case(
        name => 'not inspected',
        method => 'GET',
        path => '/v1/models',
        status => 200,
        no_record => 1,
    );
    my @raw = lines_of($RAW);
    is(scalar @raw, @raw_before + 1, 'not inspected: one unguarded line');
    my $last = $raw[-1] // '';
    my $rec = eval { $JSON->decode($last) };
    ok(ref $rec eq 'HASH' && exists $rec->{gi2}
        && !defined $rec->{gi2}{decision}
        && !defined $rec->{gen_ai}{operation}{name},
        "not inspected: still one JSON record, decision null");
    note("unguarded \$gi2_log_json of an uninspected request: '$last'");
}

###########################################################################
# the records against the template

my $nrec = scalar @RECORDS;
my $nkeys = scalar keys %FIELDS;
note("$nrec records, $nkeys distinct key paths");
ok($nrec >= 23, "$nrec records checked");

for my $p (sort keys %FIELDS) {
    my @bad = mapping_problems($p, $FIELDS{$p});
    ok(!@bad, "mapped: $p (" . join(',', sort keys %{ $FIELDS{$p}{types} })
        . ' -> ' . (($MAP{$p} || {})->{type} // 'none') . ')')
        or diag("$p: " . join('; ', @bad) . "\n  in: "
            . join(', ', sort keys %{ $FIELDS{$p}{cases} }));
}

# nothing mapped for the record is stale, and each field had a value

for my $p (sort grep { !$SHIPPER{$_} && !$RARE{$_} } keys %MAP) {
    ok($FIELDS{$p}, "template field $p is in the records");
    next unless $FIELDS{$p};
    ok($FIELDS{$p}{valued}, "template field $p had a value in some record");
}

# every record has the same keys (items and the prompt text aside)

is(scalar keys %SHAPES, 1, 'every record has the same key paths')
    or diag(join("\n", map { join(',', sort keys %{ $SHAPES{$_} }) . ": $_" }
        keys %SHAPES));

error_log_clean();
done_testing();
