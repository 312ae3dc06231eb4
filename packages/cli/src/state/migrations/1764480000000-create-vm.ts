import type {MigrationInterface, QueryRunner} from 'typeorm'

export class CreateVm1764480000000 implements MigrationInterface {
  name = 'CreateVm1764480000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "vm" (
      "id" varchar PRIMARY KEY NOT NULL,
      "name" varchar,
      "language" varchar NOT NULL,
      "plugin" varchar NOT NULL,
      "image" varchar NOT NULL,
      "image_source" varchar NOT NULL,
      "launcher" varchar NOT NULL,
      "cpus" real NOT NULL,
      "memory_mib" integer NOT NULL,
      "disk_mib" integer NOT NULL,
      "pids" integer NOT NULL,
      "network" varchar NOT NULL,
      "persist" boolean NOT NULL,
      "status" varchar NOT NULL,
      "container_ref" varchar,
      "rootfs_ref" varchar,
      "bundle_ref" varchar,
      "owner_pid" integer,
      "created_at" datetime NOT NULL,
      "updated_at" datetime NOT NULL,
      "last_error" text,
      CONSTRAINT "UQ_vm_name" UNIQUE ("name")
    )`)
    await q.query(`CREATE INDEX "IDX_vm_status" ON "vm" ("status")`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_vm_status"`)
    await q.query(`DROP TABLE "vm"`)
  }
}
