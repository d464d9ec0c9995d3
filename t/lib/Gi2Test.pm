package Gi2Test;

# Integration test harness for ngx_gi2_module, in the shape of
# nginx-tests' lib/Test/Nginx.pm: a temp prefix, free ports, nginx
# start/stop, a mock upstream that records what it receives, raw HTTP
# helpers, and the "no alerts in error.log" check.  Core Perl only.
#
# One nginx and one mock upstream per test file; state lives in %S.
# GI2_KEEP=1 keeps the prefix (its path is printed with diag).
# GI2_NGINX overrides /usr/sbin/nginx, GI2_MODULE build/ngx_http_gi2_module.so
# and GI2_TIMEOUT the 10 s waits (make test-asan, make test-valgrind).
# With GI2_SAN_LOGS set, error_log_clean() also fails on any sanitizer
# report (asan.* or ubsan.*) in that directory.
#
#   gi2_start($http_block, %o)   write nginx.conf and start nginx; the
#                                template is the body of http{}, with
#                                %%PORT%% %%PORT2%% %%UPSTREAM%% %%PREFIX%%
#                                %%MODULE%%; o: main, log_format, no_module,
#                                workers (worker_processes, default 1)
#   nginx_t($http_block, %o)     nginx -t: (exit status, output, conf path)
#   http_post($path, $body, @headers)  -> {status, headers, body, json, id}
#   http_raw($bytes | [@pieces], pause => s)  -> raw response
#   upstream_requests() / upstream_reset() / upstream_response(%r)
#   log_for($res) / log_is($res, {...})  the access log line of a request
#   error_log_clean()            stop nginx, assert no alert/crit/emerg
#   audit_http() / audit_server() / audit_for($res)  the audit record and
#                                the response-side variables of a request
#   img_png / img_jpeg / img_webp  small images with real headers
#   worker_pid() / proc_kb($pid, 'VmRSS')  the worker and its memory
#   worker_pids() / gi2_reload()  the workers; nginx -s reload
#   modapi_addr() / modapi_set(...) / modapi_requests() / modapi_reset()
#                                a mock moderation service (keep-alive,
#                                a process a connection) that records
#                                what it receives

use strict;
use warnings;

use Exporter qw(import);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Compress::Zlib qw(compress crc32);
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX qw(WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_LINGER);
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    require_module have_module module_path repo_root prefix port
    upstream_addr write_file read_file conf_expand conf_write conf_line
    gi2_start gi2_stop nginx_t
    upstream_start upstream_response upstream_requests upstream_reset
    request_bytes chunked http_post http_get http_request http_raw
    http_send parse_response header_values curl_h2 have_curl_h2
    access_log_lines log_for error_log error_log_clean
    json_decode json_encode is_rejection is_passed_exact
    no_upstream one_upstream log_is LOG_FIELDS
    img_png img_jpeg img_webp worker_pid worker_pids proc_kb gi2_reload
    audit_http audit_server audit_for rec_get rec_plain
    modapi_addr modapi_set modapi_requests modapi_reset modapi_stop
    modapi_answer
);

my $REPO = dirname(dirname(dirname(abs_path(__FILE__))));
my $NGINX = $ENV{GI2_NGINX} || '/usr/sbin/nginx';
my $MODULE = $ENV{GI2_MODULE} || "$REPO/build/ngx_http_gi2_module.so";
my $TIMEOUT = $ENV{GI2_TIMEOUT} || 10;

my %S = (id => 0);

$SIG{PIPE} = 'IGNORE';

use constant LOG_FIELDS => qw(
    t status method uri decision rule_id rule_category
    moderation_requested moderation_effective exception_id
    model n size quality reject_code
);

my $LOG_FORMAT = "escape=json '"
    . '$http_x_t|$status|$request_method|$uri|$gi2_decision|$gi2_rule_id|'
    . '$gi2_rule_category|$gi2_moderation_requested|'
    . '$gi2_moderation_effective|$gi2_exception_id|$gi2_model|$gi2_n|'
    . '$gi2_size|$gi2_quality|$gi2_reject_code' . "'";

my $DEFAULT_RESPONSE = '{"created":1713833628,"data":[{"b64_json":'
    . '"iVBORw0KGgo="}],"usage":{"total_tokens":100,"input_tokens":50,'
    . '"output_tokens":50,"input_tokens_details":{"text_tokens":10,'
    . '"image_tokens":40}}}';

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

###########################################################################
# paths, ports, files

sub repo_root { return $REPO }
sub module_path { return $MODULE }
sub have_module { return -f $MODULE }

sub require_module {
    plan skip_all => "module not built: $MODULE" unless have_module();
    plan skip_all => "no $NGINX" unless -x $NGINX;
}

sub prefix {
    return $S{prefix} if $S{prefix};
    my $keep = $ENV{GI2_KEEP} ? 1 : 0;
    $S{prefix} = tempdir('gi2-test-XXXXXX', TMPDIR => 1,
        CLEANUP => !$keep);
    # workers run as nobody when the master is root
    chmod 0755, $S{prefix};
    diag("prefix: $S{prefix}") if $keep;
    return $S{prefix};
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "free_port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub port {
    my ($n) = @_;
    $n ||= 1;
    $S{ports}[$n] ||= free_port();
    return $S{ports}[$n];
}

sub upstream_addr { return '127.0.0.1:' . upstream_start() }

sub write_file {
    my ($name, $content) = @_;
    my $path = $name =~ m{^/} ? $name : prefix() . "/$name";
    my $dir = dirname($path);
    if (!-d $dir) {
        system('mkdir', '-p', $dir) == 0 or die "mkdir $dir";
    }
    open my $fh, '>:raw', $path or die "write $path: $!";
    print {$fh} $content;
    close $fh or die "close $path: $!";
    return $path;
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

sub json_decode {
    my ($text) = @_;
    return eval { $JSON->decode($text) };
}

sub json_encode { return $JSON->encode($_[0]) }

###########################################################################
# configuration

sub conf_preamble {
    my (%o) = @_;
    my $p = prefix();
    my $err = $o{error_log} || "$p/error.log";
    my @lines;
    push @lines, "load_module $MODULE;" unless $o{no_module};
    push @lines, 'daemon on;', 'master_process on;',
        'worker_processes ' . ($o{workers} || 1) . ';',
        "error_log $err info;", "pid $p/nginx.pid;";
    push @lines, $o{main} if defined $o{main};
    push @lines, 'events {', '    worker_connections 128;', '}';
    return join("\n", @lines) . "\n";
}

sub http_preamble {
    my (%o) = @_;
    my $p = prefix();
    my $fmt = $o{log_format} || $LOG_FORMAT;
    my @lines = (
        "client_body_temp_path $p/client_body_temp;",
        "proxy_temp_path $p/proxy_temp;",
        "fastcgi_temp_path $p/fastcgi_temp;",
        "uwsgi_temp_path $p/uwsgi_temp;",
        "scgi_temp_path $p/scgi_temp;",
        "log_format gi2test $fmt;",
        "access_log $p/access.log gi2test;",
    );
    # the whole suite again with the response scanner on a thread pool
    push @lines, "gi2_response_inspection threads;"
        if $ENV{GI2_TEST_RESPONSE_THREADS} && !$o{no_module};
    return join('', map { "    $_\n" } @lines);
}

sub expand {
    my ($text) = @_;
    $text =~ s/%%PORT(\d*)%%/port($1 || 1)/ge;
    $text =~ s/%%UPSTREAM%%/upstream_addr()/ge;
    $text =~ s/%%PREFIX%%/prefix()/ge;
    $text =~ s/%%MODULE%%/$MODULE/g;
    return $text;
}

# The template is the body of the http{} block.
sub conf_expand {
    my ($tpl, %o) = @_;
    return expand(conf_preamble(%o) . "http {\n" . http_preamble(%o)
        . $tpl . "\n}\n");
}

sub conf_write {
    my ($tpl, %o) = @_;
    return write_file($o{name} || 'nginx.conf', conf_expand($tpl, %o));
}

# Line number (1-based) of the first line of $path matching $re.
sub conf_line {
    my ($path, $re) = @_;
    my @lines = split /\n/, read_file($path) // '';
    for my $i (0 .. $#lines) {
        return $i + 1 if $lines[$i] =~ $re;
    }
    return undef;
}

sub run_capture {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec(@cmd) or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# nginx -t on a config; returns (exit status, output, conf path).
sub nginx_t {
    my ($tpl, %o) = @_;
    $S{tconf}++;
    my $p = prefix();
    my $conf = conf_write($tpl, error_log => "$p/nginx-t.log",
        name => "t$S{tconf}.conf", %o);
    my ($rc, $out) = run_capture($NGINX, '-t', '-p', "$p/", '-c', $conf,
        '-e', "$p/nginx-t.log");
    return ($rc, $out, $conf);
}

###########################################################################
# nginx

sub wait_port {
    my ($port) = @_;
    my $end = time() + $TIMEOUT;
    while (time() < $end) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp');
        if ($s) {
            close $s;
            return 1;
        }
        sleep(0.02);
    }
    return 0;
}

sub gi2_start {
    my ($tpl, %o) = @_;
    gi2_stop();
    upstream_start();
    my $p = prefix();
    my $conf = conf_write($tpl, %o);
    my ($rc, $out) = run_capture($NGINX, '-p', "$p/", '-c', $conf,
        '-e', "$p/error.log");
    die "nginx failed to start ($rc): $out\n" . error_tail() if $rc;
    $S{conf} = $conf;
    $S{running} = 1;
    wait_pid_file(1) or die "no pid file\n" . error_tail();
    wait_port(port(1)) or die "port " . port(1) . " not open\n"
        . error_tail();
    return $conf;
}

sub wait_pid_file {
    my ($exists) = @_;
    my $file = prefix() . '/nginx.pid';
    my $end = time() + $TIMEOUT;
    while (time() < $end) {
        return 1 if (-s $file ? 1 : 0) == $exists;
        sleep(0.02);
    }
    return 0;
}

sub gi2_stop {
    return unless $S{running};
    $S{running} = 0;
    my $pid = read_file(prefix() . '/nginx.pid');
    return unless $pid && $pid =~ /^(\d+)/;
    $pid = $1;
    for my $sig (qw(QUIT TERM KILL)) {
        kill $sig, $pid;
        return if wait_pid_file(0) && !kill(0, $pid);
    }
}

sub error_tail {
    my $log = error_log();
    my @l = split /\n/, $log;
    splice @l, 0, @l - 20 if @l > 20;
    return join("\n", @l) . "\n";
}

sub error_log { return read_file(prefix() . '/error.log') // '' }

# Stops nginx (shutdown alerts count too), then checks error.log.
sub error_log_clean {
    gi2_stop();
    # a sanitizer that reports before its log_path is set up (nginx -t,
    # the master at start or reload) writes to stderr: the error log
    my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal|segfault
                      |runtime\ error:|ERROR:\ AddressSanitizer/xi }
        split /\n/, error_log();
    ok(!@bad, 'error.log has no alert/crit/emerg or crash lines')
        or diag(join("\n", @bad[0 .. ($#bad > 19 ? 19 : $#bad)]));
    sanitizer_clean() if $ENV{GI2_SAN_LOGS};
}

# No ASan or UBSan report so far (t/sanitize/asan-nginx writes them).
sub sanitizer_clean {
    my $dir = $ENV{GI2_SAN_LOGS};
    opendir my $dh, $dir or return fail("sanitizer logs: $dir: $!");
    my @rep = sort grep { /^(asan|ubsan)\./ } readdir $dh;
    closedir $dh;
    ok(!@rep, 'no sanitizer report') or diag(join("\n",
        map { "$dir/$_:\n" . substr(read_file("$dir/$_") // '', 0, 4000) }
            @rep[0 .. ($#rep > 2 ? 2 : $#rep)]));
}

###########################################################################
# mock upstream

sub upstream_dir { return prefix() . '/upstream' }

sub upstream_start {
    return $S{uport} if $S{uport};
    my $dir = upstream_dir();
    mkdir $dir unless -d $dir;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => 0, Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "upstream listen: $!";
    my $parent = $$;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        upstream_loop($l, $dir, $parent);
        POSIX::_exit(0);
    }
    $S{uport} = $l->sockport;
    $S{upid} = $pid;
    close $l;
    return $S{uport};
}

sub upstream_stop {
    return unless $S{upid};
    kill 'TERM', $S{upid};
    waitpid($S{upid}, 0);
    delete $S{upid};
}

sub upstream_loop {
    my ($l, $dir, $parent) = @_;
    my $sel = IO::Select->new($l);
    my $seq = 0;
    while (getppid() == $parent) {
        next unless $sel->can_read(1);
        my $c = $l->accept or next;
        eval { upstream_serve($c, $dir, \$seq) };
        close $c;
    }
}

sub upstream_serve {
    my ($c, $dir, $seq) = @_;
    my $rd = reader($c);
    my $line = $rd->{line}->();
    return unless defined $line;
    my ($method, $uri, $version) = split / /, $line;
    my ($headers, $list) = read_headers($rd);
    my ($body, $chunked) = read_body($rd, $headers);
    my $rec = { seq => ++$$seq, method => $method, uri => $uri,
        version => $version, headers => $headers, header_list => $list,
        chunked => $chunked, body_length => length($body) };
    my $name = sprintf('%s/%06d.json', $dir, $$seq);
    # a large body goes to a file of its own: base64 in JSON is too slow
    if (length($body) > 1048576) {
        write_file("$name.body", $body);
        $rec->{body_file} = "$name.body";
    } else {
        $rec->{body_b64} = encode_base64($body, '');
    }
    write_file("$name.tmp", $JSON->encode($rec));
    rename "$name.tmp", $name or die "rename: $!";
    upstream_send($c, $dir);
}

sub read_headers {
    my ($rd) = @_;
    my (%h, @list);
    while (defined(my $l = $rd->{line}->())) {
        last if $l eq '';
        my ($n, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $h{lc $n} }, $v;
        push @list, [$n, $v];
    }
    return (\%h, \@list);
}

sub read_body {
    my ($rd, $h) = @_;
    my $te = join(',', @{ $h->{'transfer-encoding'} || [] });
    return (read_chunked($rd), 1) if $te =~ /chunked/i;
    my $len = ($h->{'content-length'} || [0])->[0];
    return ($rd->{bytes}->($len), 0);
}

sub read_chunked {
    my ($rd) = @_;
    my $body = '';
    while (defined(my $l = $rd->{line}->())) {
        my ($size) = $l =~ /^([0-9a-fA-F]+)/ or die "bad chunk: $l";
        $size = hex $size;
        if ($size == 0) {
            while (defined(my $t = $rd->{line}->())) { last if $t eq '' }
            last;
        }
        $body .= $rd->{bytes}->($size);
        $rd->{line}->();
    }
    return $body;
}

sub upstream_config {
    my ($dir) = @_;
    return json_decode(read_file("$dir/../upstream-response.json") // '')
        || {};
}

# The whole answer as one string: the default, and what a plain
# upstream_response(status, headers, body) asks for.
sub upstream_reply {
    my ($dir) = @_;
    my $r = upstream_config($dir);
    my $status = $r->{status} || 200;
    my $body = defined $r->{body} ? $r->{body} : $DEFAULT_RESPONSE;
    my @h = @{ $r->{headers} || [['Content-Type', 'application/json']] };
    my $head = "HTTP/1.1 $status X\r\n"
        . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
        . 'Content-Length: ' . length($body) . "\r\n"
        . "Connection: close\r\n\r\n";
    return $head . $body;
}

# Sends what upstream_response() asked for: in one write, or piece by
# piece (pauses, chunked framing, a body file, a reset).
sub upstream_send {
    my ($c, $dir) = @_;
    my $r = upstream_config($dir);
    sleep($r->{delay}) if $r->{delay};

    if (defined $r->{raw}) {
        syswrite_all($c, $r->{raw});
        upstream_rst($c) if $r->{reset};
        return;
    }

    my $streamed = grep { defined $r->{$_} }
        qw(pieces body_file pause chunked no_length length reset_after);
    if (!$streamed) {
        syswrite_all($c, upstream_reply($dir));
        return;
    }

    my ($total, $next) = upstream_pieces($r);
    my $status = $r->{status} || 200;
    my @h = @{ $r->{headers} || [['Content-Type', 'application/json']] };
    my $out = "HTTP/1.1 $status X\r\n"
        . join('', map { "$_->[0]: $_->[1]\r\n" } @h);
    if ($r->{chunked}) {
        $out .= "Transfer-Encoding: chunked\r\n";
    } elsif (!$r->{no_length}) {
        $out .= 'Content-Length: ' . ($r->{length} // $total) . "\r\n";
    }
    $out .= "Connection: close\r\n\r\n";

    my $sent = 0;
    my $limit = $r->{reset_after};
    my $first = 1;
    while (defined(my $piece = $next->())) {
        sleep($r->{pause}) if $r->{pause} && !$first;
        $first = 0;
        my $cut = defined $limit && $sent + length($piece) > $limit;
        $piece = substr($piece, 0, $limit - $sent) if $cut;
        $sent += length $piece;
        $out .= ($r->{chunked} && length $piece)
            ? sprintf("%x\r\n%s\r\n", length $piece, $piece) : $piece;
        syswrite_all($c, $out) or return;
        $out = '';
        if ($cut) {
            upstream_rst($c);
            return;
        }
    }
    $out .= "0\r\n\r\n" if $r->{chunked} && !$r->{no_end};
    syswrite_all($c, $out) if length $out;
}

# (total body length, an iterator over the body's pieces)
sub upstream_pieces {
    my ($r) = @_;
    if (defined $r->{body_file}) {
        open my $fh, '<:raw', $r->{body_file}
            or die "body_file $r->{body_file}: $!";
        my $size = $r->{piece_size} || 65536;
        return (-s $fh, sub {
            my $n = sysread($fh, my $buf, $size);
            return $n ? $buf : undef;
        });
    }
    my @p = $r->{pieces} ? @{ $r->{pieces} }
        : (defined $r->{body} ? $r->{body} : $DEFAULT_RESPONSE);
    my $total = 0;
    $total += length for @p;
    return ($total, sub { return shift @p });
}

# Ends the connection with a TCP reset instead of a FIN.
sub upstream_rst {
    my ($c) = @_;
    setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $c;
}

# upstream_response(status => 429, headers => [[name, value]], body => $b);
# no arguments restores the default gpt-image 200 answer.  More options:
#   pieces => [@bytes]   the body, written piece by piece
#   pause => s           a pause between pieces (the head goes with the
#                        first piece; an empty first piece sends the head
#                        alone)
#   chunked => 1         Transfer-Encoding: chunked, a chunk a piece;
#                        no_end => 1 leaves out the last chunk
#   body_file => path    the body, read from a file as it is sent, in
#                        piece_size (65536) pieces
#   length => N          the Content-Length to announce (default: true)
#   no_length => 1       no Content-Length: the close ends the body
#   reset_after => N     a TCP reset after N body bytes
#   delay => s           a pause before anything is sent
#   raw => $bytes        exactly these bytes, then a close (reset => 1:
#                        a reset)
sub upstream_response {
    my (%r) = @_;
    my $file = prefix() . '/upstream-response.json';
    if (!%r) {
        unlink $file;
        return;
    }
    write_file($file, $JSON->encode(\%r));
}

sub upstream_requests {
    my $dir = upstream_dir();
    opendir my $dh, $dir or return ();
    my @files = sort grep { /^\d+\.json$/ } readdir $dh;
    closedir $dh;
    my @recs;
    for my $f (@files) {
        my $rec = json_decode(read_file("$dir/$f"));
        $rec->{body} = defined $rec->{body_file}
            ? read_file($rec->{body_file}) : decode_base64($rec->{body_b64});
        push @recs, $rec;
    }
    return @recs;
}

sub upstream_reset {
    my $dir = upstream_dir();
    opendir my $dh, $dir or return;
    unlink map { "$dir/$_" } grep { /^\d+\.json(\.body)?$/ } readdir $dh;
    closedir $dh;
}

###########################################################################
# socket I/O

# A buffered reader over a socket, with a timeout per read.
sub reader {
    my ($s) = @_;
    my $buf = '';
    my $fill = sub {
        IO::Select->new($s)->can_read($TIMEOUT) or die "read timeout\n";
        my $n = sysread($s, $buf, 65536, length $buf);
        die "read: $!\n" unless defined $n;
        return $n;
    };
    my %rd;
    $rd{line} = sub {
        while ((my $i = index($buf, "\n")) < 0) {
            return undef unless $fill->();
        }
        my $l = substr($buf, 0, index($buf, "\n") + 1, '');
        $l =~ s/\r?\n$//;
        return $l;
    };
    $rd{bytes} = sub {
        my ($n) = @_;
        while (length $buf < $n) {
            $fill->() or die "short body\n";
        }
        return substr($buf, 0, $n, '');
    };
    return \%rd;
}

sub syswrite_all {
    my ($s, $data) = @_;
    while (length $data) {
        my $n = syswrite($s, $data);
        return 0 unless $n;
        substr($data, 0, $n, '');
    }
    return 1;
}

sub read_all {
    my ($s) = @_;
    my $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read($TIMEOUT)) {
        my $n = sysread($s, $out, 65536, length $out);
        last unless $n;
    }
    return $out;
}

###########################################################################
# client

# http_raw($bytes | [@pieces], port => N, pause => seconds, then => sub)
# sends the pieces (pausing between them, if asked) and returns everything
# the server wrote until it closed the connection.
sub http_raw {
    my ($data, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $o{port} || port(1), Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    my @pieces = ref $data ? @$data : ($data);
    for my $i (0 .. $#pieces) {
        syswrite_all($s, $pieces[$i]) or last;
        sleep($o{pause}) if $o{pause} && $i < $#pieces;
    }
    my $out = read_all($s);
    close $s;
    return $out;
}

# request_bytes(METHOD, path, body|undef, [name => value, ...])
# returns (bytes, id).  Defaults: Host, Content-Type: application/json,
# Content-Length, Connection: close and X-T (the id the access log
# carries).  A header given as undef is left out; an array ref value
# sends the header once per element.
sub request_bytes {
    my ($method, $path, $body, @hdrs) = @_;
    my $id = ++$S{id};
    my @def = (Host => 'localhost', 'X-T' => $id);
    push @def, 'Content-Type' => 'application/json',
        'Content-Length' => length($body) if defined $body;
    push @def, Connection => 'close';
    my $req = "$method $path HTTP/1.1\r\n";
    for my $pair (merge_headers(\@def, \@hdrs)) {
        my ($n, $v) = @$pair;
        next unless defined $v;
        $req .= "$n: $_\r\n" for ref $v ? @$v : ($v);
    }
    return ($req . "\r\n" . ($body // ''), $id);
}

# A custom header replaces the default of the same name (in its place);
# other custom headers follow in order, repeats kept.
sub merge_headers {
    my ($def, $hdrs) = @_;
    my (%custom, @out, %used);
    for (my $i = 0; $i < @$hdrs; $i += 2) {
        $custom{ lc $hdrs->[$i] } //= $i;
    }
    for (my $i = 0; $i < @$def; $i += 2) {
        my $j = $custom{ lc $def->[$i] };
        if (defined $j) {
            push @out, [$hdrs->[$j], $hdrs->[ $j + 1 ]];
            $used{$j} = 1;
        } else {
            push @out, [$def->[$i], $def->[ $i + 1 ]];
        }
    }
    for (my $i = 0; $i < @$hdrs; $i += 2) {
        push @out, [$hdrs->[$i], $hdrs->[ $i + 1 ]] unless $used{$i};
    }
    return @out;
}

sub chunked {
    my ($pieces, $ext) = @_;
    $ext //= '';
    return join('', map { sprintf("%x%s\r\n%s\r\n", length, $ext, $_) }
        @$pieces) . "0\r\n\r\n";
}

sub http_request {
    my ($method, $path, $body, @hdrs) = @_;
    my ($req, $id) = request_bytes($method, $path, $body, @hdrs);
    return http_send($req, $id);
}

sub http_post { return http_request('POST', @_) }
sub http_get { return http_request('GET', $_[0], undef, @_[1 .. $#_]) }

sub http_send {
    my ($req, $id, %o) = @_;
    my $res = parse_response(http_raw($req, %o));
    $res->{id} = $id;
    return $res;
}

# Parses one response; {status, headers => {lc name => [values]}, body,
# json, raw, rest (bytes after this response)}.
sub parse_response {
    my ($raw) = @_;
    my %r = (raw => $raw, status => 0, headers => {}, body => '');
    my $i = index($raw, "\r\n\r\n");
    return \%r if $i < 0;
    my @lines = split /\r\n/, substr($raw, 0, $i);
    my $rest = substr($raw, $i + 4);
    ($r{status}) = (shift(@lines) // '') =~ m{^HTTP/\d\.\d (\d+)};
    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @{ $r{headers}{lc $n} }, $v;
    }
    ($r{body}, $r{rest}) = split_body(\%r, $rest);
    $r{json} = json_decode($r{body});
    return \%r;
}

sub split_body {
    my ($r, $rest) = @_;
    my $te = join(',', header_values($r, 'transfer-encoding'));
    if ($te =~ /chunked/i) {
        my $body = '';
        while ($rest =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            $body .= substr($rest, 0, $n, '');
            $rest =~ s/^\r\n//;
            last if $n == 0;
        }
        $rest =~ s/^\r\n//;
        return ($body, $rest);
    }
    my ($len) = header_values($r, 'content-length');
    return ($rest, '') unless defined $len;
    # a body cut short is all there is
    return ($rest, '') if length $rest <= $len;
    return (substr($rest, 0, $len), substr($rest, $len));
}

sub header_values {
    my ($r, $name) = @_;
    return @{ $r->{headers}{ lc $name } || [] };
}

sub have_curl_h2 {
    my ($rc, $out) = run_capture('curl', '-V');
    return !$rc && $out =~ /\bHTTP2\b/;
}

# curl_h2(port, path, body, [name => value, ...], stdin => 1)
# POST over h2c with prior knowledge.  With stdin the body is streamed
# from stdin, so curl sends no content-length.
sub curl_h2 {
    my ($port, $path, $body, $hdrs, %o) = @_;
    my $id = ++$S{id};
    my $p = prefix();
    write_file("$p/curl.in", $body);
    unlink "$p/curl.out", "$p/curl.hdr";
    my @cmd = ('curl', '-s', '--http2-prior-knowledge', '-o', "$p/curl.out",
        '-D', "$p/curl.hdr", '-H', "X-T: $id");
    my @h = ('Content-Type' => 'application/json', @{ $hdrs || [] });
    for (my $i = 0; $i < @h; $i += 2) { push @cmd, '-H', "$h[$i]: $h[$i+1]" }
    push @cmd, $o{stdin} ? ('-X', 'POST', '-T', '-')
        : ('--data-binary', "\@$p/curl.in");
    push @cmd, "http://127.0.0.1:$port$path";
    my ($rc, $out) = $o{stdin}
        ? run_capture('sh', '-c', '"$@" < "$0"', "$p/curl.in", @cmd)
        : run_capture(@cmd);
    my $res = parse_curl($p, $rc, $out);
    $res->{id} = $id;
    return $res;
}

sub parse_curl {
    my ($p, $rc, $out) = @_;
    my $hdr = read_file("$p/curl.hdr") // '';
    my $body = read_file("$p/curl.out") // '';
    my %r = (rc => $rc, curl => $out, headers => {}, body => $body,
        status => 0);
    for (split /\r?\n/, $hdr) {
        if (m{^HTTP/\S+ (\d+)}) { $r{status} = $1; $r{headers} = {} }
        elsif (/^([^:]+):\s*(.*)$/) { push @{ $r{headers}{lc $1} }, $2 }
    }
    $r{json} = json_decode($body);
    return \%r;
}

###########################################################################
# access log

sub access_log_lines {
    my $log = read_file(prefix() . '/access.log') // '';
    return split /\n/, $log;
}

# The access log entry of the request with X-T id $res->{id} (or a plain
# id) as {field => value}; waits for it, as nginx writes the line after
# a lingering close ends.
sub log_for {
    my ($res) = @_;
    my $id = ref $res ? $res->{id} : $res;
    my $end = time() + $TIMEOUT;
    while (1) {
        for my $l (reverse access_log_lines()) {
            my @v = split /\|/, $l, -1;
            next unless $v[0] eq $id;
            my %e;
            @e{ (LOG_FIELDS) } = @v;
            return \%e;
        }
        return {} if time() > $end;
        sleep(0.02);
    }
}

###########################################################################
# assertions shared by the test files

# The access log entry of $res has these field values (others unchecked).
sub log_is {
    my ($res, $want, $name) = @_;
    my $e = log_for($res);
    my %got = map { $_ => $e->{$_} } keys %$want;
    is_deeply(\%got, $want, "$name: access log")
        or diag('log line: ' . join('|', map { $e->{$_} // '' }
            (LOG_FIELDS)));
    return $e;
}

# Checks a gi2 rejection: status, content type, exact error object shape.
sub is_rejection {
    my ($res, $status, $code, $param, $name) = @_;
    my $ok = is($res->{status}, $status, "$name: status $status");
    $ok &= like(join(',', header_values($res, 'content-type')),
        qr{^application/json(\s*;.*)?$}i, "$name: content type");
    $ok &= is(join(',', header_values($res, 'x-should-retry')), 'false',
        "$name: x-should-retry false");
    my $e = ref $res->{json} eq 'HASH' ? $res->{json}{error} : undef;
    $ok &= is_deeply([sort keys %{ $res->{json} || {} }], ['error'],
        "$name: only an error object");
    $ok &= is_deeply([sort keys %{ $e || {} }],
        [qw(code message param type)], "$name: error fields");
    $ok &= is($e->{code}, $code, "$name: code $code");
    $ok &= is($e->{type}, 'invalid_request_error', "$name: type");
    $ok &= is($e->{param}, $param,
        "$name: param " . ($param // 'null'));
    diag("response: $res->{raw}") unless $ok || !defined $res->{raw};
    return $e;
}

sub clip {
    my ($s) = @_;
    return length $s > 400 ? substr($s, 0, 400) . '...' : $s;
}

sub no_upstream {
    my ($name) = @_;
    my @r = upstream_requests();
    is(scalar @r, 0, "$name: nothing reached upstream")
        or diag("upstream got: " . clip($r[0]{body}));
}

# Exactly one upstream request; returns it.
sub one_upstream {
    my ($name) = @_;
    my @r = upstream_requests();
    is(scalar @r, 1, "$name: one upstream request");
    return $r[0] || { headers => {}, body => undef };
}

# The request reached upstream with exactly these body bytes, with a
# matching Content-Length, and the client got upstream's answer.
sub is_passed_exact {
    my ($res, $body, $name) = @_;
    is($res->{status}, 200, "$name: status 200")
        or diag("response: " . clip($res->{raw} // $res->{body}));
    my $u = one_upstream($name);
    ok(defined $u->{body} && $u->{body} eq $body,
        "$name: upstream body byte-identical")
        or diag("sent: " . clip($body) . "\nupstream: "
            . clip($u->{body} // '(none)'));
    is(($u->{headers}{'content-length'} || [])->[0], length $body,
        "$name: upstream content-length");
    is($res->{body}, $DEFAULT_RESPONSE, "$name: client got upstream body");
    return $u;
}

###########################################################################
# the audit record and the response-side variables
#
#   audit_http()     log formats for the http{} block: gi2 (the record)
#                    and gi2vars (the variables, a JSON object a line)
#   audit_server()   the access_log lines for a server{}: access.log
#                    (gi2test, for log_for), vars.log and audit.log
#   audit_for($res)  {v => the variables, rec => the parsed record,
#                    line => its raw bytes, error => why there is none}

my @AUDIT_VARS = (
    [t => 'http_x_t'], [rid => 'request_id'], [status => 'status'],
    [nginx_upstream_status => 'upstream_status'],
    [request_time => 'request_time'],
    map { [$_ => "gi2_$_"] } qw(upstream_status error_type error_code
        moderation_stage moderation_categories image_sha256 image_count
        input_tokens output_tokens total_tokens prompt_hash consumer_hash
        request_id retry_count cost_usd decision reject_code model
        input_image_sha256)
);

sub audit_http {
    my $vars = join(',', map { qq("$_->[0]":"\$$_->[1]") } @AUDIT_VARS);
    return "    log_format gi2 escape=none '\$gi2_log_json';\n"
        . "    log_format gi2vars escape=json '{$vars}';\n";
}

sub audit_server {
    return join('', map { "        access_log %%PREFIX%%/$_;\n" }
        'access.log gi2test', 'vars.log gi2vars', 'audit.log gi2');
}

my $VARS_JSON = JSON::PP->new;          # bytes stay bytes
my $RECORD_JSON = JSON::PP->new->utf8;  # strict UTF-8

sub audit_for {
    my ($res) = @_;
    my $id = ref $res ? $res->{id} : $res;
    my $p = prefix();
    my $end = time() + $TIMEOUT;
    my ($v, $line);
    while (!$v) {
        for my $l (split /\n/, read_file("$p/vars.log") // '') {
            my $o = eval { $VARS_JSON->decode($l) } or next;
            $v = $o if $o->{t} eq $id;
        }
        last if $v || time() > $end;
        sleep(0.02);
    }
    return { error => "no vars.log line for request $id" } unless $v;
    while (!defined $line) {
        for my $l (split /\n/, read_file("$p/audit.log") // '') {
            $line = $l if index($l, qq("id":"$v->{rid}")) >= 0;
        }
        last if defined $line || time() > $end;
        sleep(0.02);
    }
    return { v => $v, error => "no audit.log line for $v->{rid}" }
        unless defined $line;
    my $rec = eval { $RECORD_JSON->decode($line) };
    return { v => $v, line => $line, rec => $rec,
        error => ref $rec eq 'HASH' ? undef : "record: $@" };
}

# JSON::PP values made comparable: booleans as 'true' / 'false'.
sub rec_plain {
    my ($v) = @_;
    return [map { rec_plain($_) } @$v] if ref $v eq 'ARRAY';
    return { map { $_ => rec_plain($v->{$_}) } keys %$v }
        if ref $v eq 'HASH';
    return $v ? 'true' : 'false' if JSON::PP::is_bool($v);
    return $v;
}

# A dotted path of the record; '(missing)' when a key is absent.
sub rec_get {
    my ($obj, $path) = @_;
    my $v = $obj;
    for my $k (split /\./, $path) {
        return '(missing)' unless ref $v eq 'HASH' && exists $v->{$k};
        $v = $v->{$k};
    }
    return rec_plain($v);
}

###########################################################################
# images, built byte by byte (small, real headers)

sub png_chunk {
    my ($type, $data) = @_;
    return pack('N', length $data) . $type . $data
        . pack('N', crc32($type . $data));
}

# img_png(w, h, c2pa => 'before'|'after' (the IDAT), idat => $bytes):
# an 8-bit RGB PNG of red pixels, or with the given IDAT data.
sub img_png {
    my ($w, $h, %o) = @_;
    my $idat = $o{idat} // compress(join '',
        map { "\0" . ("\xff\x00\x00" x $w) } 1 .. $h);
    my $cabx = png_chunk('caBX', pack('N', 16) . 'jumb' . pack('N', 8)
        . 'jumd');
    return "\x89PNG\r\n\x1a\n"
        . png_chunk('IHDR', pack('NNCCCCC', $w, $h, 8, 2, 0, 0, 0))
        . (($o{c2pa} // '') eq 'before' ? $cabx : '')
        . png_chunk('IDAT', $idat)
        . (($o{c2pa} // '') eq 'after' ? $cabx : '')
        . png_chunk('IEND', '');
}

sub jpeg_segment {
    my ($marker, $data) = @_;
    return "\xff" . chr($marker) . pack('n', length($data) + 2) . $data;
}

# img_jpeg(w, h, c2pa => 1 (APP11 "JP" JUMBF "jumb"), app11 => 1 (an
# APP11 that is not JUMBF)): SOI APP0 [APP11] DQT SOF0 DHT SOS data EOI.
sub img_jpeg {
    my ($w, $h, %o) = @_;
    my $jumbf = pack('N', 24) . 'jumb' . pack('N', 16) . 'jumd'
        . 'c2pa' . "\0\0\0\0";
    return "\xff\xd8"
        . jpeg_segment(0xe0, "JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
        . ($o{c2pa} ? jpeg_segment(0xeb, 'JP' . pack('nN', 1, 1) . $jumbf)
                    : '')
        . ($o{app11} ? jpeg_segment(0xeb, 'XX' . pack('nN', 1, 1)
                           . pack('N', 24) . 'abcd' . ("\0" x 16)) : '')
        . jpeg_segment(0xdb, "\0" . join('', map { chr(1 + $_ % 50) }
            0 .. 63))
        . jpeg_segment(0xc0, pack('Cnn', 8, $h, $w) . "\x03"
            . "\x01\x11\0\x02\x11\0\x03\x11\0")
        . jpeg_segment(0xc4, "\0" . ("\0" x 15) . '')
        . jpeg_segment(0xda, "\x03\x01\0\x02\0\x03\0\0\x3f\0")
        . "\xfa\xbe\x00\x12\xff\x00\x34"
        . "\xff\xd9";
}

sub webp_chunk {
    my ($type, $data) = @_;
    return $type . pack('V', length $data) . $data
        . (length($data) % 2 ? "\0" : '');
}

# img_webp(w, h, c2pa => 1 (VP8X, VP8L, C2PA chunks), vp8x => 1)
sub img_webp {
    my ($w, $h, %o) = @_;
    my $vp8l = webp_chunk('VP8L', "\x2f"
        . pack('V', ($w - 1) | (($h - 1) << 14)) . "\x00\x11\x22\x33");
    my $body = $vp8l;
    if ($o{c2pa} || $o{vp8x}) {
        my $le24 = sub { substr(pack('V', $_[0]), 0, 3) };
        $body = webp_chunk('VP8X', "\x00\0\0\0" . $le24->($w - 1)
            . $le24->($h - 1)) . $vp8l
            . ($o{c2pa} ? webp_chunk('C2PA', pack('N', 16) . 'jumb'
                . pack('N', 8) . 'jumd') : '');
    }
    return 'RIFF' . pack('V', 4 + length $body) . 'WEBP' . $body;
}

###########################################################################
# the nginx worker

# The pid of the (single) worker of the running nginx, or undef.
sub worker_pid {
    # the port answers as soon as the master listens: the worker may not
    # have been forked, or have taken its title, yet
    my $end = time() + $TIMEOUT;
    while (1) {
        my @pids = worker_pids();
        return $pids[0] if @pids == 1;
        return undef if time() > $end;
        sleep(0.02);
    }
}

# The pids of the running nginx's workers (shutting down ones too).
sub worker_pids {
    my $master = read_file(prefix() . '/nginx.pid') // '';
    ($master) = $master =~ /^(\d+)/ or return ();
    opendir my $dh, '/proc' or return ();
    my @pids;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = read_file("/proc/$pid/stat") // next;
        my ($ppid) = $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        my $cmd = read_file("/proc/$pid/cmdline") // '';
        push @pids, $pid if $ppid == $master && $cmd =~ /worker process/;
    }
    closedir $dh;
    return sort { $a <=> $b } @pids;
}

# nginx -s reload, then waits for a worker of the new generation.
# Returns the old workers' pids (they may still be finishing requests).
sub gi2_reload {
    my $p = prefix();
    my %old = map { $_ => 1 } worker_pids();
    my ($rc, $out) = run_capture($NGINX, '-p', "$p/", '-c', $S{conf},
        '-e', "$p/error.log", '-s', 'reload');
    die "nginx -s reload failed ($rc): $out" if $rc;
    my $end = time() + $TIMEOUT;
    while (time() < $end) {
        last if grep { !$old{$_} } worker_pids();
        sleep(0.02);
    }
    return sort keys %old;
}

# A field of /proc/PID/status in kB (VmRSS, VmHWM, ...), or undef.
sub proc_kb {
    my ($pid, $field) = @_;
    my $st = read_file("/proc/$pid/status") // return undef;
    return $st =~ /^\Q$field\E:\s+(\d+)\s+kB/m ? $1 : undef;
}

###########################################################################
# mock moderation service
#
# One process a connection, so that connections stay open between
# requests (keep-alive, as curl keeps them) and slow answers do not hold
# up others.  What it answers is read from modapi.json for each request:
#
#   modapi_set(default => {spec}, match => [[substring, {spec}], ...],
#              uri => {path => {spec}})
#
# a path of uri wins, then the first match whose substring is in the
# request's input (or prompt).  A spec: status (200), body (bytes) or json (a structure),
# headers ([[name, value]]), delay (seconds before answering; a client
# that goes away meanwhile is recorded as aborted), reset (a TCP reset
# instead of an answer), close (a close instead of an answer), size (a
# body of that many bytes), no_length (no Content-Length: the close ends
# the body).  Each request is recorded: method, uri,
# headers, body, json (the decoded body), conn (which connection),
# time (when it was read), answered (when the answer went), aborted.

sub modapi_dir { return prefix() . '/modapi' }

sub modapi_start {
    return $S{mport} if $S{mport};
    my $dir = modapi_dir();
    mkdir $dir unless -d $dir;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => 0, Proto => 'tcp', Listen => 256, ReuseAddr => 1)
        or die "modapi listen: $!";
    my $parent = $$;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        my $server = $$;
        while (getppid() == $parent) {
            next unless IO::Select->new($l)->can_read(0.5);
            my $c = $l->accept or next;
            my $child = fork();
            if (defined $child && $child == 0) {
                close $l;
                eval { modapi_conn($c, $dir, $server) };
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    $S{mport} = $l->sockport;
    $S{mpid} = $pid;
    close $l;
    return $S{mport};
}

sub modapi_addr { return '127.0.0.1:' . modapi_start() }

sub modapi_stop {
    return unless $S{mpid};
    kill 'TERM', $S{mpid};
    waitpid($S{mpid}, 0);
    delete $S{mpid};
    delete $S{mport};
}

sub modapi_set {
    my (%r) = @_;
    write_file(prefix() . '/modapi.json', $JSON->encode(\%r));
}

# An OpenAI moderation answer: modapi_answer(flagged, {category =>
# [flag, score]}).
sub modapi_answer {
    my ($flagged, $cats) = @_;
    my (%c, %s);
    for my $k (keys %{ $cats || {} }) {
        $c{$k} = $cats->{$k}[0] ? JSON::PP::true : JSON::PP::false;
        $s{$k} = $cats->{$k}[1] + 0;
    }
    return { id => 'modr-test', model => 'omni-moderation-latest',
        results => [{ flagged => $flagged ? JSON::PP::true : JSON::PP::false,
            categories => \%c, category_scores => \%s }] };
}

sub modapi_conn {
    my ($c, $dir, $server) = @_;
    my $conn = $$ . ':' . $c->peerport;
    my $n = 0;
    my $rd = reader($c);
    while (1) {
        # wait for the next request, or the end of the connection
        my $sel = IO::Select->new($c);
        my $ready;
        while (!$ready) {
            return if getppid() != $server;
            $ready = $sel->can_read(0.5);
        }
        my $line = $rd->{line}->();
        return unless defined $line && length $line;
        my ($method, $uri) = split / /, $line;
        my ($headers) = read_headers($rd);
        my ($body) = read_body($rd, $headers);
        my $json = json_decode($body);
        my $rec = { method => $method, uri => $uri, headers => $headers,
            body => $body, json => $json, conn => $conn, seq => ++$n,
            time => time() };
        my $name = sprintf('%s/%.6f-%d-%d.json', $dir, time(), $$, $n);
        write_file("$name.tmp", $JSON->encode($rec));
        rename "$name.tmp", $name or die "rename: $!";

        my $spec = modapi_spec($json, $uri);
        if ($spec->{delay}) {
            # a client that goes away meanwhile closes its end
            my $end = time() + $spec->{delay};
            while ((my $left = $end - time()) > 0) {
                next unless $sel->can_read($left);
                my $peek = '';
                my $got = recv($c, $peek, 1, POSIX::MSG_PEEK());
                if (!defined $got || $peek eq '') {
                    write_file("$name.aborted", '1');
                    return;
                }
                sleep(0.01);
            }
        }
        if ($spec->{reset}) {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;
        }
        return if $spec->{close};
        my $status = $spec->{status} || 200;
        my $out = defined $spec->{body} ? $spec->{body}
            : $spec->{json} ? $JSON->encode($spec->{json})
            : $spec->{size} ? '{"pad":"' . ('x' x $spec->{size}) . '"}'
            : $JSON->encode(modapi_answer(0, {}));
        my @h = @{ $spec->{headers} || [['Content-Type', 'application/json']] };
        my $head = "HTTP/1.1 $status X\r\n"
            . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
            . ($spec->{no_length} ? "Connection: close\r\n\r\n"
                : 'Content-Length: ' . length($out) . "\r\n\r\n");
        syswrite_all($c, $head . $out) or return;
        write_file("$name.answered", time());
        return if $spec->{no_length};
    }
}

sub modapi_spec {
    my ($json, $uri) = @_;
    my $cfg = json_decode(read_file(prefix() . '/modapi.json') // '') || {};
    return $cfg->{uri}{$uri} if $cfg->{uri} && $cfg->{uri}{$uri};
    my $text = '';
    if (ref $json eq 'HASH') {
        my $in = $json->{input} // $json->{prompt} // '';
        $in = join(' ', map { ref $_ eq 'HASH' ? ($_->{text} // '') : $_ }
            @$in) if ref $in eq 'ARRAY';
        $text = $in;
    }
    for my $m (@{ $cfg->{match} || [] }) {
        return $m->[1] if index($text, $m->[0]) >= 0;
    }
    return $cfg->{default} || {};
}

# Every request the service received, in order: {method, uri, headers
# (lower-case name => [values]), body, json, conn, seq, time, answered,
# aborted}.
sub modapi_requests {
    my $dir = modapi_dir();
    opendir my $dh, $dir or return ();
    my @files = sort grep { /^[\d.]+-\d+-\d+\.json$/ } readdir $dh;
    closedir $dh;
    my @recs;
    for my $f (@files) {
        my $rec = json_decode(read_file("$dir/$f")) or next;
        $rec->{aborted} = -e "$dir/$f.aborted" ? 1 : 0;
        $rec->{answered} = read_file("$dir/$f.answered");
        push @recs, $rec;
    }
    return @recs;
}

sub modapi_reset {
    my $dir = modapi_dir();
    opendir my $dh, $dir or return;
    unlink map { "$dir/$_" } grep { /\.json/ } readdir $dh;
    closedir $dh;
}

END {
    local $?;
    gi2_stop();
    upstream_stop();
    modapi_stop();
}

1;
