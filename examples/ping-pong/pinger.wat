;; pinger.wat: one half of a ping-pong rally (fire-and-forget messages only).
;;
;; Protocol (all integers little-endian; every payload starts with 0x55, raw):
;;   handle-message(sender, message):
;;     sender "host", message 0x55 peer...
;;       -> starts a rally: send-message(peer, 0x55 1000:u32). 1000 is the
;;          rally length: the rally is the messages 1000, 999, ..., 0, so it
;;          is 1001 messages long, bouncing between the two peers.
;;     any other sender, message 0x55 n:u32 ...
;;       -> if n > 0: send-message(sender, 0x55 (n - 1):u32), back to the
;;          component the host says sent it (the `sender` parameter, which a
;;          component cannot forge); n = 0 ends the rally.
;;     anything else (another prefix, too short) -> nothing is sent.
;;     The result is ok(0x55) (an empty raw body) in every case, also when a
;;     send was refused: for fire-and-forget messages the host ignores it.
;;   handle-callback(id, result) -> ok (a pinger sends no requests).
;;
;; Core module for world airssys:wasm/component (wit/world.wit), written to
;; the canonical ABI by hand, like tests/fixtures (see its README.md for the
;; layouts). Memory map: 16..32 return area of the lifecycle exports;
;; 32..48 return area of send-message; 48..53 the outgoing message; 64 the
;; static empty raw body (0x55) returned as the result; 68..72 "host"; the
;; bump heap (used by the host to place arguments) starts at 1024 and is
;; reset by the post-return functions.
(module
  (import "airssys:wasm/host-services@0.1.0" "send-message"
    (func $send_message (param $target i32) (param $target_len i32)
      (param $msg i32) (param $msg_len i32) (param $retptr i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "\55")
  (data (i32.const 68) "host")

  ;; Rally length: the first message of a rally carries this count.
  (global $rally_length i32 (i32.const 1000))

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
    (i32.store (i32.const 20) (i32.const 64))
    (i32.store (i32.const 24) (i32.const 1))
    (i32.const 16))

  ;; Is the sender the reserved id "host"?
  (func $from_host (param $sender i32) (param $sender_len i32) (result i32)
    (if (result i32) (i32.ne (local.get $sender_len) (i32.const 4))
      (then (i32.const 0))
      (else (i32.eq (i32.load (local.get $sender)) (i32.load (i32.const 68))))))

  ;; send-message(target, 0x55 n:u32). The outcome is not inspected: a
  ;; refused send just ends the rally (the host counts and audits refusals).
  (func $send_count (param $target i32) (param $target_len i32) (param $n i32)
    (i32.store8 (i32.const 48) (i32.const 0x55))
    (i32.store offset=49 (i32.const 0) (local.get $n))
    (call $send_message
      (local.get $target) (local.get $target_len)
      (i32.const 48) (i32.const 5)
      (i32.const 32)))

  (func (export "airssys:wasm/component-lifecycle@0.1.0#handle-message")
    (param $sender i32) (param $sender_len i32) (param $msg i32) (param $len i32)
    (result i32)
    (local $n i32)
    (if (i32.eqz (local.get $len)) (then (return (call $return_ok_empty))))
    (if (i32.ne (i32.load8_u (local.get $msg)) (i32.const 0x55))
      (then (return (call $return_ok_empty))))
    (if (call $from_host (local.get $sender) (local.get $sender_len))
      (then
        ;; 0x55 peer: start a rally with the peer.
        (if (i32.gt_u (local.get $len) (i32.const 1))
          (then
            (call $send_count
              (i32.add (local.get $msg) (i32.const 1))
              (i32.sub (local.get $len) (i32.const 1))
              (global.get $rally_length))))
        (return (call $return_ok_empty))))
    ;; 0x55 n:u32 from a peer: return n - 1 to it, unless n is 0.
    (if (i32.ge_u (local.get $len) (i32.const 5))
      (then
        (local.set $n (i32.load offset=1 (local.get $msg)))
        (if (local.get $n)
          (then
            (call $send_count
              (local.get $sender) (local.get $sender_len)
              (i32.sub (local.get $n) (i32.const 1)))))))
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
