#!/usr/bin/perl

# gi2_response_inspection threads[=pool]: the response scanner on one of
# nginx's thread pools.  The same answers through an inline location and
# through thread locations give the same records; big proxy buffers make
# the ring fill, so input is held and resumed (seen in the debug log);
# concurrent answers share a one-thread pool; gzip stays on the event
# loop; a graceful stop waits for the scan; bad configurations fail
# nginx -t with file:line.  (make test also runs the response-side files
# again with GI2_TEST_RESPONSE_THREADS=1: every location on threads.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use IO::Compress::Gzip qw(gzip $GzipError);
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);

require_module();

my $GEN = '/v1/images/generations';
my $COMPACT = JSON::PP->new->canonical;

sub b64 { return encode_base64($_[0], '') }

###########################################################################
# nginx -t

sub loc {
    my ($dir) = @_;
    return "    server {\n        listen 127.0.0.1:1;\n        gi2 on;\n"
        . "        location / {\n            $dir\n"
        . "            proxy_pass http://127.0.0.1:2;\n        }\n    }\n";
}

sub t_passes {
    my ($name, $tpl, %o) = @_;
    my ($rc, $out) = nginx_t($tpl, %o);
    is($rc, 0, "$name: nginx -t passes") or diag($out);
}

sub t_fails {
    my ($name, $tpl, $re, %o) = @_;
    my ($rc, $out, $conf) = nginx_t($tpl, %o);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] .*$re.* in \Q$conf\E:\d+/,
        "$name: message with file:line") or diag($out);
}

sub test_config {
    t_passes('threads (the default pool)',
        loc('gi2_response_inspection threads;'));
    t_passes('threads=POOL', loc('gi2_response_inspection threads=scan;'),
        main => 'thread_pool scan threads=2;');
    t_passes('threads at the http level, off in a location',
        "    gi2_response_inspection threads;\n"
        . loc('gi2_response_inspection off;'));

    # the pool's own check names the line that asked for it
    my ($rc, $out, $conf) = nginx_t(
        loc('gi2_response_inspection threads=nosuch;'));
    isnt($rc, 0, 'unknown pool: nginx -t fails');
    like($out, qr/\[emerg\] .*unknown thread pool "nosuch" in \Q$conf\E:\d+/,
        'unknown pool: message with file:line') or diag($out);

    t_fails('threads= without a name',
        loc('gi2_response_inspection threads=;'),
        qr/empty thread pool name in "threads="/);
    t_fails('thread (a typo)', loc('gi2_response_inspection thread;'),
        qr/invalid value "thread" in "gi2_response_inspection" directive, /
        . qr/it must be "on", "off", "threads" or "threads=POOL"/);
    t_fails('threadsX', loc('gi2_response_inspection threadsX;'),
        qr/invalid value "threadsX"/);
    t_fails('duplicate', loc("gi2_response_inspection on;\n"
        . "            gi2_response_inspection threads;"),
        qr/"gi2_response_inspection" directive is duplicate/);
    t_fails('two values', loc('gi2_response_inspection on threads;'),
        qr/invalid number of arguments in "gi2_response_inspection"/);
}

###########################################################################
# one nginx: inline and thread locations in front of the same upstream

sub start {
    gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2',
    proxy_max_temp_file_size 0;

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
EOF
        location /i/ {
            proxy_pass http://%%UPSTREAM%%;
        }
        location /t/ {
            gi2_response_inspection threads=scan;
            proxy_pass http://%%UPSTREAM%%;
        }
        # one buffer bigger than the ring: it fills inside the buffer
        location /tb/ {
            gi2_response_inspection threads=scan;
            proxy_buffer_size 256k;
            proxy_buffers 4 256k;
            proxy_busy_buffers_size 256k;
            error_log %%PREFIX%%/held.log debug;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /ts/ {
            gi2_response_inspection threads;
            proxy_buffering off;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2
        main => 'thread_pool scan threads=1;');
}

my %USAGE = (total_tokens => 4250, input_tokens => 90, output_tokens => 4160,
    input_tokens_details => { text_tokens => 50, image_tokens => 40 });

sub rnd_png {
    my ($w, $h, $n) = @_;
    return img_png($w, $h, idat => join('', map { chr(($_ * 131 + $n) % 256) }
        1 .. $n));
}

# what the record says of the answer: compared across locations
sub answer_view {
    my ($rec) = @_;
    my %v;
    for my $k (qw(gi2.images gi2.response gi2.upstream error.type error.code
        gen_ai.usage.input_tokens gen_ai.usage.output_tokens
        http.response.status_code))
    {
        my $x = rec_get($rec, $k);
        $v{$k} = ref $x ? $COMPACT->encode(rec_plain($x)) : $x;
    }
    return \%v;
}

# answer(name, status, headers, body, [image, ...], %o): the same answer
# through each location; the client gets the bytes, the records agree
# with each other and with the test's own hashes
sub answer {
    my ($name, $status, $ct, $body, $imgs, %o) = @_;
    my %view;
    my @locs = $o{locs} ? @{ $o{locs} } : qw(/i /t /tb);
    for my $loc (@locs) {
        upstream_reset();
        upstream_response(status => $status, body => $body,
            headers => [['Content-Type', $ct], @{ $o{headers} || [] }],
            %{ $o{up} || {} });
        my $req = '{"prompt":"threads ' . $name . '","model":"gpt-image-1"'
            . ($ct =~ /event/ ? ',"stream":true' : '') . '}';
        my $res = http_post("$loc$GEN", $req);
        is($res->{status}, $o{want_status} // $status, "$name $loc: status");
        ok(($res->{body} // '') eq ($o{want_body} // $body),
            "$name $loc: the client got upstream's bytes")
            or diag(length($res->{body} // '') . ' of ' . length $body);
        my @up = upstream_requests();
        ok(@up == 1 && $up[0]{body} eq $req, "$name $loc: upstream got it");
        my $a = audit_for($res);
        ok(!$a->{error}, "$name $loc: record") or diag($a->{error});
        is($a->{v}{image_sha256}, join(',', map { sha256_hex($_) } @$imgs),
            "$name $loc: image hashes");
        $view{$loc} = answer_view($a->{rec} || {});
    }
    upstream_response();
    for my $loc (@locs[1 .. $#locs]) {
        is_deeply($view{$loc}, $view{ $locs[0] },
            "$name: $loc records the answer as $locs[0] does");
    }
    return \%view;
}

sub test_same_records {
    my $one = rnd_png(64, 64, 3000);
    answer('one image', 200, 'application/json',
        '{"created":1,"data":[{"b64_json":"' . b64($one) . '"}],"usage":'
        . $COMPACT->encode(\%USAGE) . '}', [$one]);

    my @three = map { rnd_png(32 * $_, 32, 200_000 + $_) } 1 .. 3;
    answer('n=3, 800 KB', 200, 'application/json',
        '{"created":1,"data":[' . join(',', map {
            '{"b64_json":"' . b64($_) . '"}' } @three) . ']}', \@three);

    my $big = rnd_png(2048, 2048, 6_000_000);
    answer('8 MB', 200, 'application/json',
        '{"created":1,"data":[{"b64_json":"' . b64($big) . '"}]}', [$big]);

    answer('moderation_blocked', 400, 'application/json',
        '{"error":{"message":"Your request was rejected by the safety '
        . 'system. safety_violations=[sexual].","type":'
        . '"image_generation_user_error","param":null,"code":'
        . '"moderation_blocked","moderation_details":{"moderation_stage":'
        . '"output","categories":["sexual"]}}}', []);

    # cut mid-base64: the announced length never arrives
    my $cut = rnd_png(256, 256, 400_000);
    my $whole = '{"created":1,"data":[{"b64_json":"' . b64($cut) . '"}]}';
    my $part = substr($whole, 0, 300_000);
    my $view = answer('cut mid-base64', 200, 'application/json', $part, [],
        up => { length => length $whole });
    like($view->{'/t'}{'gi2.response'} // '', qr/"truncated":"?true/,
        'cut mid-base64: /t says truncated')
        or diag($view->{'/t'}{'gi2.response'});

    # streamed: partial images counted, the completed one hashed
    my $p0 = rnd_png(16, 16, 60_000);
    my $fin = rnd_png(64, 64, 300_000);
    my $sse = join('', map { "event: $_->[0]\ndata: "
            . $COMPACT->encode({ type => $_->[0], b64_json => b64($_->[1]),
                ($_->[2] ? (usage => \%USAGE) : ()) }) . "\n\n" }
        ['image_generation.partial_image', $p0],
        ['image_generation.partial_image', $p0],
        ['image_generation.completed', $fin, 1]);
    $view = answer('stream', 200, 'text/event-stream', $sse, [$fin],
        locs => [qw(/i /t /ts)]);
    like($view->{'/ts'}{'gi2.images'} // '', qr/"partial_count":2/,
        'stream: two partial images counted on threads');
}

# the ring filled inside a buffer, and the rest came after the task
sub test_held {
    my $p = prefix();
    my $log = read_file("$p/held.log") // '';
    my $held = () = $log =~ /gi2 thread scan: ring full, input held/g;
    my $tasks = () = $log =~ /gi2 thread scan: task posted/g;
    cmp_ok($held, '>', 0, "big buffers: input was held ($held times)");
    cmp_ok($tasks, '>', $held, "big buffers: tasks posted ($tasks)");
}

# gzip: inflated on the event loop, the client still gets the gzip bytes
sub test_gzip {
    my $img = rnd_png(128, 128, 100_000);
    my $json = '{"created":1,"data":[{"b64_json":"' . b64($img) . '"}]}';
    gzip(\$json => \my $gz) or die $GzipError;
    answer('gzip', 200, 'application/json', $gz, [$img],
        headers => [['Content-Encoding', 'gzip']], locs => [qw(/i /t)]);
}

# concurrent answers on a one-thread pool: each record has its own hash
sub test_concurrent {
    my @img = map { rnd_png(512, 512, 1_500_000 + 7 * $_) } 1 .. 6;
    my $p = prefix();
    my @files;
    for my $i (0 .. $#img) {
        my $f = "$p/conc$i.json";
        write_file("conc$i.json", '{"created":1,"data":[{"b64_json":"'
            . b64($img[$i]) . '"}]}');
        push @files, $f;
    }
    # the mock answers one body for all: serve the six from a tiny nginx
    # location instead, by request path
    my @kids;
    my %got;
    upstream_reset();
    pipe(my $rd, my $wr) or die "pipe: $!";
    for my $i (0 .. $#img) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            close $rd;
            # the children share the parent's id counter: ids of their own
            my $res = http_post("/static$i$GEN",
                '{"prompt":"concurrent","model":"gpt-image-1"}',
                'X-T' => "conc$i");
            $res->{id} = "conc$i";
            print {$wr} "$i $res->{status} " . sha256_hex($res->{body} // '')
                . " $res->{id}\n";
            close $wr;
            POSIX::_exit(0);    # not the harness's END: it stops nginx
        }
        push @kids, $pid;
    }
    close $wr;
    while (my $l = <$rd>) {
        my ($i, $st, $bh, $id) = split ' ', $l;
        $got{$i} = [$st, $bh, $id];
    }
    waitpid($_, 0) for @kids;
    for my $i (0 .. $#img) {
        my ($st, $bh, $id) = @{ $got{$i} || [] };
        is($st, 200, "concurrent $i: status");
        is($bh, sha256_hex(read_file("$p/conc$i.json")),
            "concurrent $i: the client got its own answer");
        my $a = audit_for($id // 'none');
        is($a->{v}{image_sha256}, sha256_hex($img[$i]),
            "concurrent $i: the record has its own image's hash");
    }
}

# a graceful stop while answers are scanned: they end, with records
sub test_quit {
    my $img = rnd_png(2048, 1024, 4_000_000);
    my $body = '{"created":1,"data":[{"b64_json":"' . b64($img) . '"}]}';
    upstream_reset();
    upstream_response(status => 200, body => $body,
        headers => [['Content-Type', 'application/json']],
        pieces => [unpack('(a262144)*', $body)], pause => 0.05);
    my ($req, $id) = request_bytes('POST', "/t$GEN",
        '{"prompt":"quit","model":"gpt-image-1"}');
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        sleep(0.3);
        my $p = prefix();
        system($ENV{GI2_NGINX} || '/usr/sbin/nginx', '-p', "$p/", '-c',
            "$p/nginx.conf", '-e', "$p/error.log", '-s', 'quit');
        POSIX::_exit(0);
    }
    my $res = parse_response(http_raw($req));
    waitpid($pid, 0);
    is($res->{status}, 200, 'quit: status');
    ok(($res->{body} // '') eq $body, 'quit: the answer ended whole');
    my $a = audit_for($id);
    ok(!$a->{error}, 'quit: record') or diag($a->{error});
    is($a->{v}{image_sha256}, sha256_hex($img), 'quit: hash');
    is(rec_get($a->{rec}, 'gi2.response.truncated'), 'false',
        'quit: not truncated');
    upstream_response();
}

test_config();
start();
test_same_records();
test_held();
test_gzip();
error_log_clean();

# the concurrent case needs answers by path: a second nginx of static
# files as upstream
gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2',
    server {
        listen 127.0.0.1:%%PORT2%%;
        default_type application/json;
        location ~ ^/static(\d)/ {
            gi2 off;
            access_log off;
            try_files /conc$1.json =404;
            root %%PREFIX%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
EOF
        location /static {
            gi2_response_inspection threads=scan;
            proxy_method GET;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /t/ {
            gi2_response_inspection threads=scan;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2
    main => 'thread_pool scan threads=1;');
test_concurrent();
test_quit();
error_log_clean();

done_testing();
