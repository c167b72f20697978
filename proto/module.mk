# proto: the wire protocol. shiftadd.proto is compiled by protoc-c at build time into
# $(B)/gen/proto/shiftadd.pb-c.{c,h} (included as "proto/shiftadd.pb-c.h" through -I$(B)/gen);
# shm_ring.{h,c} is the shared-memory ring ABI, status.c the Status <-> errno map.
# Used by both the daemon and the client library; depends on common/ only.
PROTO_GEN_C := $(B)/gen/proto/shiftadd.pb-c.c
PROTO_GEN_H := $(B)/gen/proto/shiftadd.pb-c.h
PROTO_LDLIBS := -lprotobuf-c

proto_SRCS := $(wildcard proto/*.c)
$(eval $(call add_lib,proto))
proto_OBJS += $(B)/gen/proto/shiftadd.pb-c.o
$(B)/libproto.a: $(B)/gen/proto/shiftadd.pb-c.o

# One protoc-c run makes both files (grouped target, GNU make >= 4.3).
$(PROTO_GEN_C) $(PROTO_GEN_H) &: proto/shiftadd.proto
	@mkdir -p $(B)/gen
	@$(if $(Q),echo "  PROTOC  $<")
	$(Q)protoc-c --proto_path=. --c_out=$(B)/gen $<

$(B)/gen/proto/shiftadd.pb-c.o: $(PROTO_GEN_C) $(PROTO_GEN_H)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# Objects that include the generated header must wait for it on a first build under -j
# (afterwards their .d files carry the edge). Modules that include it add theirs the same way.
$(filter-out $(B)/gen/%,$(proto_OBJS)): | $(PROTO_GEN_H)
