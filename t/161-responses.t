#!/usr/bin/perl

# The Responses API: a request whose tools hold {"type":"image_generation"}
# gets the prompt rules (on the text given to the model) and the moderation
# policy (on the tool's "moderation", rewritten by splicing); one without
# passes byte for byte, unread on the way back.  The answer's image results
# are hashed, in a JSON body and in a streamed transcript with partial
# images; error events are recorded.  gi2_endpoint picks the entry point.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use MIME::Base64 qw(encode_base64);
use Gi2Test;

require_module();

my $KEY = 'responses-audit-key-0123456789ab';
write_file('gi2.key', "$KEY\n");

gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2');
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_price gpt-5 input=1.25 output=10;

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        client_max_body_size 10m;
        gi2_rule r_nude deny sexual "\bnude\b";
        gi2_rule f_gun flag weapons "\bgun\b";
        gi2_exception EXC-1;
EOF
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /rewrite/ {
            gi2_moderation_low rewrite;
            client_body_buffer_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /allow/ {
            gi2_moderation_low allow;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /userhash/ {
            gi2_user_field hash;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /sse/ {
            proxy_buffering off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /custom/ {
            gi2_endpoint responses;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /asedits/ {
            gi2_endpoint edits;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2

my $RESP = '/v1/responses';
my $DEFAULT = '{"created":1713833628,"data":[{"b64_json":"iVBORw0KGgo="}],'
    . '"usage":{"total_tokens":100,"input_tokens":50,"output_tokens":50,'
    . '"input_tokens_details":{"text_tokens":10,"image_tokens":40}}}';

sub b64 { return encode_base64($_[0], '') }

sub tool {
    my ($extra) = @_;
    return '{"type":"image_generation"' . ($extra // '') . '}';
}

sub req {
    my ($input, $tools, $extra) = @_;
    return '{"model":"gpt-5","input":' . $input
        . (defined $tools ? ',"tools":[' . $tools . ']' : '')
        . ($extra // '') . '}';
}

sub passed {
    my ($r, $body, $name) = @_;
    return is_passed_exact($r, $body, $name);
}

sub rejected {
    my ($r, $code, $param, $name) = @_;
    my $e = is_rejection($r, 400, $code, $param, $name);
    no_upstream($name);
    return $e;
}

###########################################################################
# without the image tool: forwarded as it came, not read on the way back

sub test_no_tool {
    my @bodies = (
        ['text only', req('"a nude figure"')],
        ['other tools', req('"a nude"', '{"type":"web_search",'
            . '"moderation":"low"}', ',"moderation":"low"')],
        ['a prompt template', '{"prompt":{"id":"pmpt_1","variables":'
            . '{"x":"nude"}},"input":[{"role":"user","content":"nude"}]}'],
        ['tool in a string', req('"{\"type\":\"image_generation\"}"')],
    );

    for my $c (@bodies) {
        my ($name, $body) = @$c;
        upstream_reset();
        upstream_response();
        my $r = http_post($RESP, $body);
        passed($r, $body, "no image tool: $name");
        log_is($r, { decision => '', reject_code => '', rule_id => '',
            moderation_requested => '' }, "no image tool: $name");
    }

    # not read on the way back, even with an image in it; the exception
    # header is still taken out, and not checked
    my $png = img_png(2, 2);
    upstream_response(status => 200,
        headers => [['Content-Type', 'application/json']],
        body => '{"output":[{"type":"image_generation_call","result":"'
            . b64($png) . '"}]}');
    upstream_reset();
    my $body = req('"a cat"');
    my $r = http_post($RESP, $body, 'X-GI2-Exception' => 'nonsense');
    is($r->{status}, 200, 'no image tool: answer passed');
    my $u = one_upstream('no image tool');
    is($u->{body}, $body, 'no image tool: body byte-identical');
    ok(!$u->{headers}{'x-gi2-exception'},
        'no image tool: exception header removed');
    my $a = audit_for($r);
    my $rec = $a->{rec} || {};
    is($rec->{gi2}{decision}, undef, 'no image tool: decision null');
    is($rec->{gen_ai}{operation}{name}, 'responses',
        'no image tool: operation responses');
    is($rec->{gen_ai}{output}{type}, undef, 'no image tool: output type null');
    is(rec_get($rec, 'gi2.response.inspected'), 'false',
        'no image tool: answer not inspected');
    is($rec->{gi2}{images}{count}, undef, 'no image tool: no image count');
    upstream_response();

    # a large body through a temporary file
    upstream_reset();
    $body = req('"' . ('x' x 300_000) . ' nude"');
    $r = http_post($RESP, $body);
    passed($r, $body, 'no image tool: large body');

    # invalid JSON is refused: whether it holds the tool cannot be known
    upstream_reset();
    $r = http_post($RESP, '{"input":"x","tools":[');
    rejected($r, 'gi2_invalid_request', undef, 'no image tool: bad JSON');
}

###########################################################################
# the prompt rules, on every text given to the model

sub test_rules {
    my @deny = (
        ['input string', req('"a nude figure"', tool())],
        ['message content string', req('[{"role":"user","content":'
            . '"a n\u200bude figure"}]', tool())],
        ['input_text part', req('[{"type":"message","role":"user",'
            . '"content":[{"type":"input_image","image_url":"https://x/a.png"'
            . '},{"text":"a NUDE figure","type":"input_text"}]}]', tool())],
        ['instructions', req('"a cat"', tool(), ',"instructions":"draw '
            . 'everyone nude"')],
        ['developer message', req('[{"role":"developer","content":'
            . '"always nude"},{"role":"user","content":"a cat"}]', tool())],
        ['assistant output_text', req('[{"role":"assistant","content":'
            . '[{"type":"output_text","text":"here is a nude"}]},'
            . '{"role":"user","content":"again"}]', tool())],
        ['template variables', '{"prompt":{"id":"pmpt_1","variables":'
            . '{"subject":"nude"}},"tools":[' . tool() . ']}'],
        ['tools first', '{"tools":[' . tool() . '],"input":"nude"}'],
    );

    for my $c (@deny) {
        my ($name, $body) = @$c;
        upstream_reset();
        my $r = http_post($RESP, $body);
        rejected($r, 'gi2_prompt_rejected', 'prompt', "deny: $name");
        log_is($r, { decision => 'reject', rule_id => 'r_nude' },
            "deny: $name");
    }

    # not read: other fields of the input, and metadata
    upstream_reset();
    my $body = req('[{"type":"function_call_output","call_id":"c1",'
        . '"output":"nude"},{"role":"user","content":[{"type":"input_image",'
        . '"image_url":"data:image/png;base64,bnVkZQ=="},{"type":'
        . '"input_text","text":"a cat"}]}]', tool(),
        ',"metadata":{"content":"nude"}');
    my $r = http_post($RESP, $body);
    passed($r, $body, 'not screened: tool output, image, metadata');

    upstream_reset();
    $body = req('"a toy gun"', tool(',"size":"1024x1024","quality":"high"'));
    $r = http_post($RESP, $body);
    passed($r, $body, 'flag');
    log_is($r, { decision => 'flag', rule_id => 'f_gun', model => 'gpt-5',
        size => '1024x1024', quality => 'high', moderation_effective => 'auto'
        }, 'flag');
    my $rec = audit_for($r)->{rec} || {};
    is($rec->{gi2}{prompt}{length}, 9, 'flag: prompt length of the input');
    is($rec->{gen_ai}{operation}{name}, 'responses', 'flag: operation');
    is($rec->{gi2}{decision}, 'flag', 'flag: decision in the record');
}

###########################################################################
# the moderation policy, on the tool's moderation

sub test_moderation {
    my $low = req('"a lighthouse"', '{"type":"web_search"},'
        . tool(',"moderation" : "low","size":"auto"'));

    upstream_reset();
    my $r = http_post($RESP, $low);
    rejected($r, 'gi2_moderation_exception_required', 'moderation', 'low');
    log_is($r, { decision => 'reject', moderation_requested => 'low' },
        'low');

    upstream_reset();
    $r = http_post($RESP, $low, 'X-GI2-Exception' => 'EXC-1');
    my $u = passed($r, $low, 'low with an exception');
    ok(!$u->{headers}{'x-gi2-exception'},
        'low with an exception: header removed');
    log_is($r, { decision => 'allow', exception_id => 'EXC-1',
        moderation_effective => 'low' }, 'low with an exception');

    upstream_reset();
    $r = http_post($RESP, $low, 'X-GI2-Exception' => 'EXC-2');
    rejected($r, 'gi2_moderation_exception_invalid', 'moderation',
        'unknown exception');

    upstream_reset();
    $r = http_post("/allow$RESP", $low);
    passed($r, $low, 'allow mode');

    (my $auto = $low) =~ s/"moderation" : "low"/"moderation" : "auto"/;
    upstream_reset();
    $r = http_post("/rewrite$RESP", $low);
    passed($r, $auto, 'rewrite');
    log_is($r, { decision => 'rewrite', moderation_requested => 'low',
        moderation_effective => 'auto' }, 'rewrite');

    # moderation before type, escaped, after a large input: a temp file
    $low = req('"' . ('y' x 100_000) . '"', '{"moderation":"l\u006fw",'
        . '"type":"image_generation"}');
    ($auto = $low) =~ s/"l\\u006fw"/"auto"/;
    upstream_reset();
    $r = http_post("/rewrite$RESP", $low);
    passed($r, $auto, 'rewrite: escaped, before type, from a temp file');

    # another tool's moderation is not the policy's
    my $other = req('"a"', '{"type":"web_search","moderation":"low"},'
        . tool(',"moderation":"auto"'));
    upstream_reset();
    $r = http_post("/rewrite$RESP", $other);
    passed($r, $other, 'another tool\'s moderation');
    log_is($r, { decision => 'allow', moderation_requested => 'auto' },
        'another tool\'s moderation');

    # the user field, with the tool and without
    my $body = req('"a cat"', tool(), ',"user":"alice"');
    (my $want = $body) =~ s/"alice"/'"hmac-sha256:'
        . hmac_sha256_hex('alice', $KEY) . '"'/e;
    upstream_reset();
    $r = http_post("/userhash$RESP", $body);
    passed($r, $want, 'user hash with the tool');

    $body = req('"a cat"', undef, ',"user":"alice"');
    upstream_reset();
    $r = http_post("/userhash$RESP", $body);
    passed($r, $body, 'user kept without the tool');
}

sub test_invalid {
    my @cases = (
        ['two image tools', req('"a"', tool() . ',' . tool()),
            'more than one image_generation tool in the request', 'tools'],
        ['duplicate moderation', req('"a"',
            tool(',"moderation":"auto","moderation":"low"')),
            'duplicate key in the request body', 'moderation'],
        ['duplicate tools', '{"tools":[],"tools":[' . tool() . ']}',
            'duplicate key in the request body', 'tools'],
        ['duplicate input', '{"input":"a","input":"nude","tools":['
            . tool() . ']}', 'duplicate key in the request body', 'input'],
        ['moderation high', req('"a"', tool(',"moderation":"high"')),
            q('moderation' must be "auto" or "low"), 'moderation'],
        ['moderation null', req('"a"', tool(',"moderation":null')),
            q('moderation' must be "auto" or "low"), 'moderation'],
        ['text over 1 MiB', req('"' . ('z' x 1048577) . '"', tool()),
            'the text given to the model is over 1 MiB', 'input'],
        ['not an object', '[' . tool() . ']',
            'the request body must be a JSON object', undef],
    );

    for my $c (@cases) {
        my ($name, $body, $msg, $param) = @$c;
        upstream_reset();
        my $r = http_post($RESP, $body);
        my $e = rejected($r, 'gi2_invalid_request', $param, $name);
        is($e->{message}, $msg, "$name: message");
    }
}

###########################################################################
# the answer

my $PNG = img_png(5, 3);
my $PNG_A = img_png(1, 1);
my $PNG_B = img_png(2, 1);
my $JPEG = img_jpeg(8, 6);

sub test_json_answer {
    my $answer = '{"id":"resp_1","object":"response","status":"completed",'
        . '"output":[{"type":"reasoning","id":"rs_1","summary":[]},'
        . '{"type":"message","id":"msg_1","role":"assistant","content":'
        . '[{"type":"output_text","text":"' . b64($PNG_A) . '"}]},'
        . '{"id":"ig_1","type":"image_generation_call","status":"completed",'
        . '"background":"opaque","output_format":"png","quality":"high",'
        . '"size":"1024x1024","result":"' . b64($PNG) . '",'
        . '"revised_prompt":"a cat"}],"usage":{"input_tokens":100,'
        . '"input_tokens_details":{"cached_tokens":0},"output_tokens":200,'
        . '"output_tokens_details":{"reasoning_tokens":50},'
        . '"total_tokens":300}}';
    upstream_response(status => 200,
        headers => [['Content-Type', 'application/json']], body => $answer);
    upstream_reset();
    my $r = http_post($RESP, req('"a cat"', tool()));
    is($r->{body}, $answer, 'json answer: client got it unchanged');
    my $a = audit_for($r);
    my $rec = $a->{rec} || {};
    is($a->{v}{image_sha256}, sha256_hex($PNG),
        'json answer: $gi2_image_sha256 of the call result only');
    is($rec->{gi2}{images}{count}, 1, 'json answer: one image');
    my $img = ($rec->{gi2}{images}{items} || [])->[0] || {};
    is_deeply([@$img{qw(sha256 bytes format width height)}],
        [sha256_hex($PNG), length $PNG, 'png', 5, 3],
        'json answer: image item');
    is($rec->{gen_ai}{usage}{input_tokens}, 100, 'json answer: input tokens');
    is($rec->{gen_ai}{usage}{output_tokens}, 200,
        'json answer: output tokens');
    is($rec->{gi2}{usage}{total_tokens}, 300, 'json answer: total tokens');
    is($rec->{gi2}{cost}{usd}, '0.002125', 'json answer: cost of gpt-5');
    is(rec_get($rec, 'gi2.response.inspected'), 'true',
        'json answer: inspected');
    upstream_response();
}

sub sse_event {
    my ($type, $json) = @_;
    return "event: $type\ndata: {\"type\":\"$type\",$json}\n\n";
}

sub test_stream {
    my $item = '{"id":"ig_1","type":"image_generation_call","status":'
        . '"completed","background":"opaque","output_format":"jpeg",'
        . '"quality":"high","size":"1024x1024","result":"' . b64($JPEG)
        . '","revised_prompt":"a cat"}';
    my @ev = (
        sse_event('response.created', '"sequence_number":0,"response":'
            . '{"id":"resp_1","object":"response","status":"in_progress",'
            . '"output":[],"usage":null}'),
        sse_event('response.output_item.added', '"sequence_number":1,'
            . '"output_index":0,"item":{"id":"ig_1","type":'
            . '"image_generation_call","status":"in_progress"}'),
        sse_event('response.image_generation_call.in_progress',
            '"sequence_number":2,"output_index":0,"item_id":"ig_1"'),
        sse_event('response.image_generation_call.generating',
            '"sequence_number":3,"output_index":0,"item_id":"ig_1"'),
        sse_event('response.image_generation_call.partial_image',
            '"sequence_number":4,"output_index":0,"item_id":"ig_1",'
            . '"partial_image_index":0,"partial_image_b64":"'
            . b64($PNG_A) . '"'),
        sse_event('response.image_generation_call.partial_image',
            '"sequence_number":5,"output_index":0,"item_id":"ig_1",'
            . '"partial_image_b64":"' . b64($PNG_B)
            . '","partial_image_index":1'),
        sse_event('response.image_generation_call.completed',
            '"sequence_number":6,"output_index":0,"item_id":"ig_1"'),
        sse_event('response.output_item.done', '"sequence_number":7,'
            . '"output_index":0,"item":' . $item),
        sse_event('response.completed', '"sequence_number":8,"response":'
            . '{"id":"resp_1","object":"response","status":"completed",'
            . '"output":[' . $item . '],"usage":{"input_tokens":60,'
            . '"output_tokens":1600,"total_tokens":1660}}'),
    );
    my $transcript = join '', @ev;

    # in pieces that cut events, base64 and keys anywhere
    upstream_response(status => 200,
        headers => [['Content-Type', 'text/event-stream']],
        pieces => [unpack('(a97)*', $transcript)], pause => 0.002);
    upstream_reset();
    my $body = req('"a cat"', tool(',"partial_images":2'),
        ',"stream":true');
    my $r = http_post("/sse$RESP", $body);
    is($r->{status}, 200, 'stream: status 200');
    is($r->{body}, $transcript, 'stream: client got the transcript as sent');
    is(one_upstream('stream')->{body}, $body, 'stream: request unchanged');
    my $a = audit_for($r);
    my $rec = $a->{rec} || {};
    is($a->{v}{image_sha256}, sha256_hex($JPEG),
        'stream: the final image hashed, the partials not');
    is($rec->{gi2}{images}{count}, 1,
        'stream: one image (output_item.done; not again from completed)');
    is($rec->{gi2}{images}{partial_count}, 2, 'stream: two partial images');
    my $img = ($rec->{gi2}{images}{items} || [])->[0] || {};
    is_deeply([@$img{qw(sha256 format width height)}],
        [sha256_hex($JPEG), 'jpeg', 8, 6], 'stream: image item');
    is(rec_get($rec, 'gi2.response.stream'), 'true', 'stream: stream');
    is(rec_get($rec, 'gi2.response.truncated'), 'false',
        'stream: not truncated');
    is(rec_get($rec, 'gi2.request.stream'), 'true', 'stream: request stream');
    is($rec->{gen_ai}{usage}{output_tokens}, 1600,
        'stream: usage from response.completed');

    # a failed response
    $transcript = $ev[0] . $ev[1] . sse_event('response.failed',
        '"sequence_number":2,"response":{"id":"resp_2","status":"failed",'
        . '"error":{"code":"moderation_blocked","message":"Your request '
        . 'was rejected by the safety system."},"usage":null}');
    upstream_response(status => 200,
        headers => [['Content-Type', 'text/event-stream']],
        body => $transcript);
    upstream_reset();
    $r = http_post("/sse$RESP", $body);
    is($r->{body}, $transcript, 'failed: client got the transcript');
    $a = audit_for($r);
    is($a->{v}{error_code}, 'moderation_blocked',
        'failed: $gi2_error_code from response.failed');
    is($a->{rec}{gi2}{images}{count}, 0, 'failed: no image');
    is(($a->{rec}{gi2}{upstream}{error} || {})->{code}, 'moderation_blocked',
        'failed: gi2.upstream.error.code');

    # an error event
    $transcript = $ev[0] . sse_event('error', '"code":"server_error",'
        . '"message":"The server had an error.","param":null');
    upstream_response(status => 200,
        headers => [['Content-Type', 'text/event-stream']],
        body => $transcript);
    upstream_reset();
    $r = http_post("/sse$RESP", $body);
    $a = audit_for($r);
    is($a->{v}{error_code}, 'server_error', 'error event: code recorded');
    is(($a->{rec}{error} || {})->{code}, 'server_error',
        'error event: error.code in the record');
    is_deeply($a->{rec}{event}{type}, ['access', 'error'],
        'error event: event.type error, though the status is 200');

    # an upstream error answer
    upstream_response(status => 400,
        headers => [['Content-Type', 'application/json']],
        body => '{"error":{"message":"Invalid value","type":'
            . '"invalid_request_error","param":"tools[0].size","code":'
            . '"invalid_value"}}');
    upstream_reset();
    $r = http_post($RESP, req('"a"', tool(',"size":"9x9"')));
    is($r->{status}, 400, 'upstream error: status');
    $a = audit_for($r);
    is($a->{v}{error_code}, 'invalid_value', 'upstream error: code');
    is(($a->{rec}{gi2}{upstream}{error} || {})->{param}, 'tools[0].size',
        'upstream error: param');
    upstream_response();
}

###########################################################################
# which requests are the Responses API

sub test_endpoint {
    my $deny = req('"nude"', tool());

    for my $path ('/openai/v1/responses', '/v1/RESPONSES/', '/responses') {
        upstream_reset();
        rejected(http_post($path, $deny), 'gi2_prompt_rejected', 'prompt',
            "auto: $path");
    }

    for my $path ('/v1/responses/input_tokens', '/v1/responsesx',
        '/v1/responses/resp_1/cancel')
    {
        upstream_reset();
        my $r = http_post($path, $deny);
        passed($r, $deny, "auto: $path not inspected");
    }

    upstream_reset();
    my $r = http_get('/v1/responses/resp_1');
    is($r->{status}, 200, 'GET a response: passed');
    log_is($r, { decision => '' }, 'GET a response: not inspected');

    upstream_reset();
    rejected(http_post('/custom/gateway/create', $deny),
        'gi2_prompt_rejected', 'prompt', 'gi2_endpoint responses');
    upstream_reset();
    $r = http_post('/custom/v1/images/generations', '{"prompt":"nude"}');
    passed($r, '{"prompt":"nude"}',
        'gi2_endpoint responses: an images body has no tool');

    upstream_reset();
    rejected(http_post('/asedits/v1/responses', '{"prompt":"nude"}'),
        'gi2_prompt_rejected', 'prompt', 'gi2_endpoint edits on a JSON body');
    my $rec = audit_for(http_post('/asedits/v1/responses',
        '{"prompt":"a cat"}'))->{rec} || {};
    is($rec->{gen_ai}{operation}{name}, 'image_edit',
        'gi2_endpoint edits: operation image_edit');

    my ($rc, $out, $conf) = nginx_t(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_endpoint chat;
    }
EOF
    isnt($rc, 0, 'gi2_endpoint chat: nginx -t fails');
    my $line = conf_line($conf, qr/gi2_endpoint chat/);
    like($out, qr/invalid value "chat" in .*\Q$conf\E:$line/,
        'gi2_endpoint chat: the file and line');

    ($rc, $out) = nginx_t(<<'EOF');
    gi2_endpoint responses;
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2_endpoint auto;
        location / { gi2 on; gi2_endpoint edits; }
    }
EOF
    is($rc, 0, 'gi2_endpoint at every level: nginx -t passes') or diag($out);
}

test_no_tool();
test_rules();
test_moderation();
test_invalid();
test_json_answer();
test_stream();
test_endpoint();
error_log_clean();
done_testing();
