;; client.wat: shows the three ends of a request that does not simply fail.
;;
;; Protocol (all payloads start with 0x55, raw; integers little-endian):
;;   handle-message(sender, message):
;;     sender "host", any message -> in order:
;;       (a) send-request("service", 0x55 "hello", 100 ms): `service` echoes
;;           it, so the callback gets ok(0x55 "hello"): completed.
;;       (b) send-request("sleepy", 0x55 0xFFFFFFFF:u32, 100 ms): `sleepy`
;;           loops forever on it, so after 100 ms the callback gets
;;           err(timeout): timed out. (Later the host's 1000 ms time budget
;;           traps sleepy; the request is dead-lettered, its late failure is
;;           dropped as orphaned, and the supervisor restarts sleepy.)
;;       (c) send-request("sleepy", 0x55 "hi", 5000 ms), then at once
;;           cancel-request(its id): the callback gets err(cancelled). The
;;           request waits in sleepy's mailbox behind (b), so the cancel
;;           always comes first; the restarted sleepy answers it later and
;;           that answer is dropped as orphaned.
;;       -> ok(0x55) when the host accepted all four calls; otherwise
;;          err(code = 1 + messaging-error case, message = the error's
;;          string) at the first refusal (queue-full has no string).
;;     any other sender -> ok(0x55), nothing sent.
;;   handle-callback(id, result) -> ok (the host counts every outcome; run
;;     with RUST_LOG=wasm_system=debug to see them).
;;
;; Core module for world airssys:wasm/component (wit/world.wit), written to
;; the canonical ABI by hand, like tests/fixtures (see its README.md for the
;; layouts). Memory map: 16..32 return area of the lifecycle exports;
;; 32..48 return area of host-services calls; 64.. static strings and
;; payloads (below); the bump heap starts at 1024 and is reset by the
;; post-return functions.
(module
  (import "airssys:wasm/host-services@0.1.0" "send-request"
    (func $send_request (param $target i32) (param $target_len i32)
      (param $req i32) (param $req_len i32) (param $timeout_ms i64) (param $retptr i32)))
  (import "airssys:wasm/host-services@0.1.0" "cancel-request"
    (func $cancel_request (param $id i32) (param $id_len i32) (param $retptr i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "service")               ;; 64, 7 bytes
  (data (i32.const 72) "sleepy")                ;; 72, 6 bytes
  (data (i32.const 80) "\55hello")              ;; 80, 6 bytes
  (data (i32.const 88) "\55\ff\ff\ff\ff")       ;; 88, 5 bytes: slow.wat's loop forever
  (data (i32.const 96) "\55hi")                 ;; 96, 3 bytes: short, so slow.wat echoes it
  (data (i32.const 112) "\55")                  ;; 112, 1 byte: the empty raw body
  (data (i32.const 116) "host")                 ;; 116, 4 bytes

  (global $heap_base i32 (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))

  ;; cabi_realloc: bump allocator. Aligns up, grows memory as needed (traps
  ;; if it cannot), copies the old block when reallocating; never frees.
  (func $cabi_realloc (export "cabi_realloc")
    (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $new_size i32)
    (result i32)
    (local $ptr i32) (local $end i32) (local $have i64) (local $need i64)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $new_size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
    ;; Bytes available, in i64: 65536 pages of 64 KiB do not fit in an i32.
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (local.set $need (i64.extend_i32_u (local.get $end)))
    (if (i64.gt_u (local.get $need) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u
                    (i64.add (i64.sub (local.get $need) (local.get $have)) (i64.const 0xffff))
                    (i64.const 16))))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old_ptr)
      (then
        (memory.copy (local.get $ptr) (local.get $old_ptr)
          (select (local.get $old_size) (local.get $new_size)
            (i32.lt_u (local.get $old_size) (local.get $new_size))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; ok(0x55): writes the result into the return area, returns its address.
  (func $return_ok_empty (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 112))
    (i32.store (i32.const 24) (i32.const 1))
    (i32.const 16))

  ;; err(code = 1 + messaging-error case, message = its string) from the
  ;; error a host-services call wrote at 32: byte 36 the case, string pointer
  ;; at 40 and length at 44 for every case but queue-full (3).
  (func $return_messaging_error (result i32)
    (local $case i32)
    (local.set $case (i32.load8_u (i32.const 36)))
    (i32.store8 (i32.const 16) (i32.const 1))
    (i32.store (i32.const 20) (i32.add (local.get $case) (i32.const 1)))
    (if (i32.eq (local.get $case) (i32.const 3))
      (then
        (i32.store (i32.const 24) (i32.const 0))
        (i32.store (i32.const 28) (i32.const 0)))
      (else
        (i32.store (i32.const 24) (i32.load (i32.const 40)))
        (i32.store (i32.const 28) (i32.load (i32.const 44)))))
    (i32.const 16))

  ;; Is the sender the reserved id "host"?
  (func $from_host (param $sender i32) (param $sender_len i32) (result i32)
    (if (result i32) (i32.ne (local.get $sender_len) (i32.const 4))
      (then (i32.const 0))
      (else (i32.eq (i32.load (local.get $sender)) (i32.load (i32.const 116))))))

  ;; send-request(target, payload, timeout_ms); returns 0 when accepted (the
  ;; id's pointer is then at 36 and its length at 40), 1 when refused.
  (func $request (param $target i32) (param $target_len i32)
    (param $payload i32) (param $payload_len i32) (param $timeout_ms i64) (result i32)
    (call $send_request
      (local.get $target) (local.get $target_len)
      (local.get $payload) (local.get $payload_len)
      (local.get $timeout_ms)
      (i32.const 32))
    (i32.load8_u (i32.const 32)))

  (func (export "airssys:wasm/component-lifecycle@0.1.0#handle-message")
    (param $sender i32) (param $sender_len i32) (param $msg i32) (param $len i32)
    (result i32)
    (if (i32.eqz (call $from_host (local.get $sender) (local.get $sender_len)))
      (then (return (call $return_ok_empty))))
    ;; (a) completes: service echoes well within 100 ms.
    (if (call $request (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 6) (i64.const 100))
      (then (return (call $return_messaging_error))))
    ;; (b) times out: sleepy never answers within 100 ms.
    (if (call $request (i32.const 72) (i32.const 6) (i32.const 88) (i32.const 5) (i64.const 100))
      (then (return (call $return_messaging_error))))
    ;; (c) cancelled: cancel the request right after sending it (it waits
    ;; behind (b) in sleepy's mailbox, so no answer can come first).
    (if (call $request (i32.const 72) (i32.const 6) (i32.const 96) (i32.const 3) (i64.const 5000))
      (then (return (call $return_messaging_error))))
    ;; The id string was placed on our heap by the host (via cabi_realloc);
    ;; pass it straight back. 36/40 are overwritten by the call's own result
    ;; only after the host has read its arguments.
    (call $cancel_request (i32.load (i32.const 36)) (i32.load (i32.const 40)) (i32.const 32))
    (if (i32.load8_u (i32.const 32))
      (then (return (call $return_messaging_error))))
    (call $return_ok_empty))

  (func (export "airssys:wasm/component-lifecycle@0.1.0#handle-callback")
    (param $id i32) (param $id_len i32)
    (param $disc i32) (param $a i32) (param $b i32) (param $c i32) (param $d i32)
    (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))

  ;; Post-return: everything allocated for the call is dead; reset the heap.
  (func (export "cabi_post_airssys:wasm/component-lifecycle@0.1.0#handle-message") (param i32)
    (global.set $heap (global.get $heap_base)))
  (func (export "cabi_post_airssys:wasm/component-lifecycle@0.1.0#handle-callback") (param i32)
    (global.set $heap (global.get $heap_base)))
)
