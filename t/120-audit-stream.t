#!/usr/bin/perl

# Streamed answers and big ones: server-sent events (partial images, the
# completed image, usage, a mid-stream error), events as they come (the
# body filter must not hold them back), a client that goes away, a
# response that goes through a proxy temporary file, and a 20 MB image
# whose hash is right while the worker's memory does not grow with it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Compress::Zlib qw(crc32);
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);

require_module();

my $KEY = 'stream-audit-key-0123456789abcdef';
my $TOKEN = 'sk-stream-token-abc123';
my $GEN = '/v1/images/generations';
my $EDIT = '/v1/images/edits';
my $COMPACT = JSON::PP->new->canonical;

write_file('gi2.key', "$KEY\n");

gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2'
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_price gpt-image-1 input=5 output=40 image_input=10;
    proxy_max_temp_file_size 64m;

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
EOF
        location / {
            proxy_pass http://%%UPSTREAM%%;
        }
        location /sse/ {
            proxy_buffering off;
            proxy_pass http://%%UPSTREAM%%;
        }
        # the same without gi2: how nginx alone times the events
        location /plain/ {
            gi2 off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /plain-sse/ {
            gi2 off;
            proxy_buffering off;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%% sndbuf=32k;
        gi2 on;
EOF2
    . audit_server() . <<'EOF3');
        location / {
            proxy_buffers 4 4k;
            proxy_buffer_size 4k;
            proxy_busy_buffers_size 8k;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF3

sub b64 { return encode_base64($_[0], '') }

my %USAGE = (total_tokens => 4250, input_tokens => 90, output_tokens => 4160,
    input_tokens_details => { text_tokens => 50, image_tokens => 40 });
my $COST = (50 * 5 + 40 * 10 + 4160 * 40) / 1e6;
my $SSE_H = [['Content-Type', 'text/event-stream; charset=utf-8'],
    ['Cache-Control', 'no-cache'], ['x-request-id', 'req_sse_1']];

# One SSE event as the Images API writes it.
sub event {
    my ($type, %f) = @_;
    my $data = $COMPACT->encode({ type => $type, %f });
    return "event: $type\ndata: $data\n\n";
}

sub partial {
    my ($kind, $img, $i) = @_;
    return event("$kind.partial_image", b64_json => b64($img),
        created_at => 1749000000, size => '1024x1024', quality => 'high',
        background => 'opaque', output_format => 'png',
        partial_image_index => $i);
}

sub completed {
    my ($kind, $img, %o) = @_;
    return event("$kind.completed", b64_json => b64($img),
        created_at => 1749000001, size => '1024x1024', quality => 'high',
        background => 'opaque', output_format => 'png',
        ($o{no_usage} ? () : (usage => \%USAGE)));
}

my $P0 = img_png(8, 8);
my $P1 = img_png(16, 16);
my $FINAL = img_png(32, 24, c2pa => 'before');
my $JFINAL = img_jpeg(48, 32, c2pa => 1);

###########################################################################
# a client that notes when each marker arrived, and may leave early

# timed(req, port, markers => [...], leave_after => marker) ->
#   {raw, at => {marker => seconds}, left => 1 if it left}
sub timed {
    my ($req, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $o{port} || port(1), Proto => 'tcp') or die "$!";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}) if $o{rcvbuf};
    my $t0 = time();
    syswrite($s, $req);
    sleep($o{read_delay}) if $o{read_delay};
    my (%at, $buf);
    $buf = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(10)) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        for my $m (@{ $o{markers} || [] }) {
            $at{$m} //= time() - $t0 if index($buf, $m) >= 0;
        }
        if ($o{leave_after} && defined $at{ $o{leave_after} }) {
            close $s;
            return { raw => $buf, at => \%at, left => 1 };
        }
    }
    close $s;
    return { raw => $buf, at => \%at };
}

###########################################################################
# one exchange, all of it checked (as in 100-audit-response.t)

sub case {
    my (%c) = @_;
    my $name = $c{name};
    upstream_reset();
    upstream_response(%{ $c{upstream} });
    my ($req, $id) = request_bytes('POST', $c{path} // $GEN, $c{body},
        Authorization => "Bearer $TOKEN");
    my $res = http_send($req, $id, port => $c{port} || port(1));
    upstream_response();
    my $sent = join '', @{ $c{upstream}{pieces} || [$c{upstream}{body}] };

    is($res->{status}, $c{status} // 200, "$name: status")
        or diag(substr($res->{raw}, 0, 300));
    if (exists $c{client}) {
        ok($res->{body} eq $c{client}, "$name: client body");
    } else {
        ok($res->{body} eq $sent, "$name: client got the stream byte "
            . 'for byte') or diag(sprintf('sent %d, got %d', length $sent,
            length $res->{body}));
    }
    my @up = upstream_requests();
    ok(@up == 1 && $up[0]{body} eq $c{body},
        "$name: upstream got the request body");
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record is strict UTF-8 JSON")
        or diag(($a->{error} // '') . "\n" . ($a->{line} // ''));
    my $v = $a->{v} || {};
    my $rec = $a->{rec} || {};
    if ($c{vars}) {
        my %got = map { $_ => $v->{$_} } keys %{ $c{vars} };
        is_deeply(\%got, $c{vars}, "$name: variables")
            or diag($COMPACT->encode($v));
    }
    if ($c{rec}) {
        my %got = map { $_ => rec_get($rec, $_) } keys %{ $c{rec} };
        is_deeply(\%got, $c{rec}, "$name: record fields")
            or diag(substr($a->{line} // '', 0, 3000));
    }
    return ($res, $v, $rec);
}

sub item {
    my ($img, $fmt, $w, $h, $c2pa) = @_;
    return { sha256 => sha256_hex($img), bytes => length $img,
        format => $fmt, width => $w, height => $h,
        c2pa => $c2pa ? 'true' : 'false', truncated => 'false',
        bad_base64 => 'false' };
}

my $STREAM_BODY = '{"model":"gpt-image-1","prompt":"a fox in snow",'
    . '"stream":true,"partial_images":2}';

###########################################################################
# events

sub test_generation_stream {
    my @ev = (partial('image_generation', $P0, 0),
        partial('image_generation', $P1, 1),
        completed('image_generation', $FINAL));
    my %vars = (image_sha256 => sha256_hex($FINAL), image_count => '1',
        input_tokens => '90', output_tokens => '4160',
        total_tokens => '4250', cost_usd => sprintf('%.6f', $COST),
        upstream_status => '200', request_id => 'req_sse_1',
        error_type => '', error_code => '');
    my %rec = ('gi2.response.stream' => 'true',
        'gi2.response.inspected' => 'true',
        'gi2.response.truncated' => 'false',
        'gi2.response.malformed' => 'false',
        'gi2.request.stream' => 'true',
        'gi2.images.count' => 1, 'gi2.images.partial_count' => 2,
        'gi2.images.items' => [item($FINAL, 'png', 32, 24, 1)],
        'gi2.usage.input_image_tokens' => 40,
        'gen_ai.operation.name' => 'image_generation',
        'event.type' => ['access', 'allowed']);

    case(name => 'stream: 2 partials + completed', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev },
        vars => \%vars, rec => \%rec);

    # the same stream in 1..9-byte chunks, chunked framing
    my $all = join '', @ev;
    my @small;
    for (my ($i, $n) = (0, 1); $i < length $all; $i += $n, $n = $n % 9 + 1) {
        push @small, substr($all, $i, $n);
    }
    case(name => 'stream: tiny chunks', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@small,
            chunked => 1 }, vars => \%vars, rec => \%rec);

    # CRLF line ends, comments, retry fields, "data:" without a space
    (my $crlf = $all) =~ s/\n/\r\n/g;
    $crlf = ": keep-alive\r\n\r\nretry: 1000\r\n\r\n" . $crlf;
    $crlf =~ s/data: /data:/g;
    case(name => 'stream: CRLF, comments', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H,
            pieces => [unpack('(a1000)*', $crlf)] },
        vars => \%vars, rec => \%rec);

    # data split over several data: lines
    # (split between members: SSE joins the lines with "\n", which is
    # JSON whitespace there)
    my $multi = join '', map {
        my $e = $_;
        $e =~ s/^data: (.*)$/"data: " . join(",\ndata: ",
            split(m{,(?=")}, $1))/me;
        $e;
    } @ev;
    case(name => 'stream: multi-line data', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, body => $multi },
        vars => \%vars, rec => \%rec);

    # no event: lines; "type" after "b64_json" decides it
    my $late = join '', map { "data: $_\n\n" }
        '{"b64_json":"' . b64($P0) . '","partial_image_index":0,'
            . '"type":"image_generation.partial_image"}',
        '{"b64_json":"' . b64($FINAL) . '","usage":'
            . $COMPACT->encode(\%USAGE)
            . ',"type":"image_generation.completed"}';
    case(name => 'stream: type last, no event lines', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, body => $late },
        vars => { image_sha256 => sha256_hex($FINAL), image_count => '1' },
        rec => { 'gi2.images.partial_count' => 1 });

    # gzip over the stream
    gzip(\$all => \my $gz) or die $GzipError;
    case(name => 'stream: gzip', body => $STREAM_BODY,
        upstream => { status => 200, pieces => [unpack('(a333)*', $gz)],
            headers => [@$SSE_H, ['Content-Encoding', 'gzip']] },
        vars => \%vars,
        rec => { %rec, 'gi2.response.content_encoding' => 'gzip' });
}

sub test_edit_stream {
    my $body = '{"model":"gpt-image-1","prompt":"make it night",'
        . '"stream":true,"partial_images":1,"images":[{"image_url":'
        . '"data:image/png;base64,' . b64($P0) . '"}]}';
    my @ev = (partial('image_edit', $P1, 0), completed('image_edit', $JFINAL));
    case(name => 'edit stream', path => $EDIT, body => $body,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev },
        vars => { image_sha256 => sha256_hex($JFINAL), image_count => '1',
            output_tokens => '4160' },
        rec => { 'gen_ai.operation.name' => 'image_edit',
            'gi2.images.partial_count' => 1,
            'gi2.images.items' => [item($JFINAL, 'jpeg', 48, 32, 1)],
            'gi2.response.stream' => 'true' });
}

sub test_stream_error {
    my $err = { type => 'image_generation_user_error',
        code => 'moderation_blocked', param => undef,
        message => 'Your request was rejected by the safety system. '
            . 'safety_violations=[sexual].',
        moderation_details => { moderation_stage => 'output',
            categories => ['sexual'] } };
    my @ev = (partial('image_generation', $P0, 0),
        "event: error\ndata: " . $COMPACT->encode({ type => 'error',
            error => $err }) . "\n\n");
    my %want_v = (error_type => 'image_generation_user_error',
        error_code => 'moderation_blocked', moderation_stage => 'output',
        moderation_categories => 'sexual', image_count => '0',
        image_sha256 => '', upstream_status => '200');
    my %want_r = ('gi2.upstream.error.code' => 'moderation_blocked',
        'error.code' => 'moderation_blocked',
        'event.type' => ['access', 'error'],
        'gi2.images.partial_count' => 1, 'gi2.images.count' => 0,
        'gi2.response.truncated' => 'false',
        'gi2.response.malformed' => 'false');
    case(name => 'mid-stream error', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev,
            pause => 0.1 },
        vars => \%want_v, rec => \%want_r);

    # the error object without "type":"error", and only the event name
    @ev = (partial('image_generation', $P0, 0),
        "event: error\ndata: " . $COMPACT->encode({ error => $err })
        . "\n\n");
    case(name => 'mid-stream error, event name only', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev },
        vars => \%want_v, rec => \%want_r);

    # a flat error event
    @ev = (partial('image_generation', $P0, 0),
        "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\","
        . "\"message\":\"boom\",\"param\":null}\n\n");
    case(name => 'mid-stream flat error', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev },
        vars => { error_code => 'server_error', image_count => '0' },
        rec => { 'gi2.images.partial_count' => 1 });
}

sub test_stream_cut {
    my @ev = (partial('image_generation', $P0, 0),
        completed('image_generation', $FINAL));
    my $all = join '', @ev;
    my $cut = length($ev[0]) + 200;                   # in the final b64
    case(name => 'stream cut mid-event', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, chunked => 1,
            no_end => 1, pieces => [substr($all, 0, $cut)] },
        client => substr($all, 0, $cut),
        vars => { image_sha256 => '' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.images.partial_count' => 1 });

    # the upstream stops at an event boundary, the completed event never
    # comes: the stream did not end, so it is truncated
    case(name => 'stream cut at an event boundary', body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, chunked => 1,
            no_end => 1, pieces => [$ev[0]] },
        client => $ev[0],
        vars => { image_sha256 => '', image_count => '0' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.images.partial_count' => 1 });
    case(name => 'stream short of its Content-Length at an event boundary',
        body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H,
            length => length($all), pieces => [$ev[0]] },
        client => $ev[0],
        vars => { image_sha256 => '', image_count => '0' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.images.partial_count' => 1 });

    # a malformed event is skipped, the next one still read
    @ev = ("event: image_generation.partial_image\ndata: {\"type\":"
        . "\"image_generation.partial_image\",\"b64_json\":\"AAAA\"]]\n\n",
        completed('image_generation', $FINAL));
    case(name => 'stream: malformed event, then a good one',
        body => $STREAM_BODY,
        upstream => { status => 200, headers => $SSE_H, pieces => \@ev },
        vars => { image_sha256 => sha256_hex($FINAL), image_count => '1' },
        rec => { 'gi2.response.malformed' => 'true' });
}

###########################################################################
# timing: the filter holds nothing back

sub test_no_delay {
    my @ev = (partial('image_generation', $P0, 0),
        partial('image_generation', $P1, 1),
        completed('image_generation', $FINAL));
    my @mark = ('"partial_image_index":0', '"partial_image_index":1',
        'image_generation.completed","usage"');
    my $P = 0.6;
    my %t;
    for my $loc (['/sse', 'buffering off'], ['/plain-sse', 'buffering off, '
        . 'no gi2'], ['', 'buffering on'], ['/plain', 'buffering on, no gi2'])
    {
        my ($path, $what) = @$loc;
        upstream_reset();
        upstream_response(status => 200, headers => $SSE_H, pieces => \@ev,
            pause => $P);
        my ($req, $id) = request_bytes('POST', "$path$GEN", $STREAM_BODY);
        my $r = timed($req, markers => \@mark);
        upstream_response();
        my $res = parse_response($r->{raw});
        $res->{id} = $id;
        ok($res->{body} eq join('', @ev),
            "timing, $what: client got the stream byte for byte");
        my @t = map { $r->{at}{$_} // 99 } @mark;
        $t{$path} = \@t;
        note(sprintf("timing, $what: events at %.3f %.3f %.3f", @t));
        ok($t[2] >= 2 * $P * 0.9 && $t[2] < 2 * $P + 1,
            "timing, $what: last event") or diag("at $t[2]");
        next if $path =~ /plain/;
        my $a = audit_for($res);
        is($a->{v}{image_sha256}, sha256_hex($FINAL),
            "timing, $what: hashed");
    }

    # unbuffered: each event reaches the client as upstream sends it
    ok($t{'/sse'}[0] < $P * 0.75, 'timing, buffering off: first event '
        . 'before the second was sent') or diag("at $t{'/sse'}[0]");
    ok($t{'/sse'}[1] >= $P * 0.9 && $t{'/sse'}[1] < 2 * $P * 0.9,
        'timing, buffering off: second event as it was sent')
        or diag("at $t{'/sse'}[1]");

    # and never later than nginx without gi2
    for my $pair (['/sse', '/plain-sse'], ['', '/plain']) {
        my ($g, $b) = @$pair;
        for my $i (0 .. 2) {
            ok($t{$g}[$i] - $t{$b}[$i] < 0.25, "timing, '$g' vs '$b': "
                . "event $i no later than without gi2") or diag(
                sprintf('%.3f vs %.3f', $t{$g}[$i], $t{$b}[$i]));
        }
    }
}

###########################################################################
# the client goes away

sub test_client_gone {
    # the first event big enough to get through proxy buffers at once
    my $big0 = img_png(100, 100, idat => join('', map { chr($_ % 241) }
        1 .. 150_000));
    my @ev = (partial('image_generation', $big0, 0),
        partial('image_generation', $P1, 1),
        completed('image_generation', $FINAL));
    for my $loc (['/sse', 'buffering off'], ['', 'buffering on']) {
        my ($path, $what) = @$loc;
        upstream_reset();
        upstream_response(status => 200, headers => $SSE_H, pieces => \@ev,
            pause => 0.5);
        my ($req, $id) = request_bytes('POST', "$path$GEN", $STREAM_BODY,
            Authorization => "Bearer $TOKEN");
        # buffered, the end of an event waits for the next one: leave
        # mid-event there; unbuffered, right after the first event
        my $m = $path eq '/sse' ? '"partial_image_index":0'
            : substr(b64($big0), 100_000, 40);
        my $r = timed($req, markers => [$m], leave_after => $m);
        ok($r->{left} && $r->{at}{$m} < 0.4,
            "client gone, $what: left after the first event")
            or diag('at ' . ($r->{at}{$m} // 'never'));
        my $a = audit_for($id);
        ok(!$a->{error}, "client gone, $what: a record is still written")
            or diag($a->{error});
        my $rec = $a->{rec} || {};
        is(rec_get($rec, 'gi2.response.truncated'), 'true',
            "client gone, $what: truncated")
            or diag(substr($a->{line} // '', 0, 3000));
        is(rec_get($rec, 'gi2.images.count'), 0,
            "client gone, $what: no completed image");
        is($a->{v}{image_sha256}, '', "client gone, $what: no image hash");
        my @up = upstream_requests();
        ok(@up == 1 && $up[0]{body} eq $STREAM_BODY,
            "client gone, $what: upstream got the request");
        upstream_response();
        # the mock finishes writing into the closed connection
        sleep(1.2);
    }

    # a JSON answer, the client leaves mid-base64
    my $img = img_png(64, 64, idat => join('', map { chr($_ % 253) }
        1 .. 200_000));
    my $json = '{"created":1,"data":[{"b64_json":"' . b64($img) . '"}]}';
    upstream_reset();
    upstream_response(status => 200, pieces => [unpack('(a20000)*', $json)],
        pause => 0.05, headers => [['Content-Type', 'application/json']]);
    my ($req, $id) = request_bytes('POST', $GEN,
        '{"prompt":"leave early","model":"gpt-image-1"}');
    my $r = timed($req, markers => ['b64_json'], leave_after => 'b64_json');
    ok($r->{left}, 'client gone, json: left');
    my $a = audit_for($id);
    ok(!$a->{error}, 'client gone, json: record') or diag($a->{error});
    is(rec_get($a->{rec}, 'gi2.response.truncated'), 'true',
        'client gone, json: truncated');
    is($a->{v}{image_sha256}, '', 'client gone, json: no hash');
    upstream_response();
    sleep(1);
}

###########################################################################
# a proxy temporary file on the way

sub test_temp_file {
    my $img = img_png(512, 512, idat => join('', map { chr(($_ * 7) % 256) }
        1 .. 3_000_000));
    my $json = '{"created":1,"data":[{"b64_json":"' . b64($img) . '"}],'
        . '"usage":' . $COMPACT->encode(\%USAGE) . '}';
    my $before = () = error_log() =~ /buffered to a temporary file/g;
    upstream_reset();
    upstream_response(status => 200, body => $json,
        headers => [['Content-Type', 'application/json']]);
    my $body = '{"prompt":"temp file","model":"gpt-image-1"}';
    my ($req, $id) = request_bytes('POST', $GEN, $body);
    my $r = timed($req, port => port(2), read_delay => 1.5);
    upstream_response();
    my $res = parse_response($r->{raw});
    is($res->{status}, 200, 'temp file: status');
    ok($res->{body} eq $json, 'temp file: client got the body byte for byte')
        or diag(length($res->{body}) . ' of ' . length $json);
    my $after = () = error_log() =~ /buffered to a temporary file/g;
    ok($after > $before, 'temp file: the answer went through a temp file');
    my $a = audit_for($id);
    ok(!$a->{error}, 'temp file: record') or diag($a->{error});
    is($a->{v}{image_sha256}, sha256_hex($img), 'temp file: hash');
    is(rec_get($a->{rec}, 'gi2.response.inspected'), 'true',
        'temp file: inspected');
    is_deeply(rec_get($a->{rec}, 'gi2.images.items'),
        [item($img, 'png', 512, 512, 0)], 'temp file: item');
    my @up = upstream_requests();
    ok(@up == 1 && $up[0]{body} eq $body, 'temp file: upstream body');
}

###########################################################################
# 20 MB

sub big_png {
    my ($mb) = @_;
    open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
    my $n = read($fh, my $rnd, $mb * 1024 * 1024);
    close $fh;
    die "urandom: short read" unless $n == $mb * 1024 * 1024;
    my $chunk = sub {
        my ($t, $d) = @_;
        return pack('N', length $d) . $t . $d . pack('N', crc32($t . $d));
    };
    return "\x89PNG\r\n\x1a\n"
        . $chunk->('IHDR', pack('NNCCCCC', 4096, 4096, 8, 6, 0, 0, 0))
        . $chunk->('IDAT', $rnd) . $chunk->('IEND', '');
}

sub file_sha {
    my ($path) = @_;
    my $sha = Digest::SHA->new(256);
    $sha->addfile($path);
    return $sha->hexdigest;
}

sub mem_case {
    my ($name, $file, $img, $ct, $path) = @_;
    my $pid = worker_pid();
    ok($pid, "$name: the worker's pid") or return;
    my $rss0 = proc_kb($pid, 'VmRSS');
    my $reset = 0;
    if (open(my $cr, '>', "/proc/$pid/clear_refs")) {
        $reset = print({$cr} "5\n") && close($cr);
    }
    my $hwm0 = proc_kb($pid, 'VmHWM');
    note("$name: worker $pid VmRSS $rss0 kB, VmHWM $hwm0 kB"
        . ($reset ? ' (peak reset)' : ' (peak not reset)'));

    upstream_reset();
    upstream_response(status => 200, body_file => $file,
        headers => [['Content-Type', $ct]]);
    my $body = '{"prompt":"big","model":"gpt-image-1","stream":'
        . ($ct =~ /event/ ? 'true' : 'false') . '}';
    my $res = http_post($path, $body);
    upstream_response();

    is($res->{status}, 200, "$name: status");
    is(length $res->{body}, -s $file, "$name: client got every byte");
    is(sha256_hex($res->{body}), file_sha($file),
        "$name: client body byte-identical");
    my @up = upstream_requests();
    ok(@up == 1 && $up[0]{body} eq $body, "$name: upstream body");
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record") or diag($a->{error});
    is($a->{v}{image_sha256}, sha256_hex($img),
        "$name: SHA-256 of the decoded 20 MB");
    is_deeply(rec_get($a->{rec}, 'gi2.images.items'),
        [item($img, 'png', 4096, 4096, 0)], "$name: item");
    is(rec_get($a->{rec}, 'gi2.response.truncated'), 'false',
        "$name: not truncated");

    my $rss1 = proc_kb($pid, 'VmRSS');
    my $hwm1 = proc_kb($pid, 'VmHWM');
    note("$name: after: VmRSS $rss1 kB, VmHWM $hwm1 kB");
    cmp_ok($rss1 - $rss0, '<', 10 * 1024,
        "$name: worker RSS grew by less than 10 MB ("
        . ($rss1 - $rss0) . ' kB)');
    cmp_ok($hwm1 - $rss0, '<', 10 * 1024,
        "$name: worker peak RSS less than 10 MB over the start ("
        . ($hwm1 - $rss0) . ' kB)') if $reset;
}

sub test_twenty_mb {
    my $img = big_png(20);
    my $p = prefix();

    my $json = "$p/big.json";
    open my $fh, '>:raw', $json or die $!;
    print {$fh} '{"created":1749000001,"data":[{"b64_json":"', b64($img),
        '"}],"usage":', $COMPACT->encode(\%USAGE), '}';
    close $fh;

    my $sse = "$p/big.sse";
    open $fh, '>:raw', $sse or die $!;
    print {$fh} partial('image_generation', $P0, 0),
        "event: image_generation.completed\ndata: {\"type\":"
        . '"image_generation.completed","b64_json":"', b64($img),
        '","usage":', $COMPACT->encode(\%USAGE), "}\n\n";
    close $fh;

    # warm up the worker (OpenSSL, zlib, pools) before measuring
    upstream_reset();
    upstream_response(status => 200, body => '{"created":1,"data":[{'
        . '"b64_json":"' . b64($P0) . '"}]}',
        headers => [['Content-Type', 'application/json']]);
    http_post($GEN, '{"prompt":"warm up"}') for 1 .. 3;

    mem_case('20 MB json', $json, $img, 'application/json', $GEN);
    mem_case('20 MB json, again', $json, $img, 'application/json', $GEN);
    mem_case('20 MB stream', $sse, $img, 'text/event-stream', "/sse$GEN");
    unlink $json, $sse;
}

my $T0 = time();
for my $t (qw(test_generation_stream test_edit_stream test_stream_error
    test_stream_cut test_no_delay test_client_gone test_temp_file
    test_twenty_mb))
{
    no strict 'refs';
    &$t();
    note(sprintf('%s done at %.1fs', $t, time() - $T0));
}
error_log_clean();
done_testing();
