import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * The egress policy of a VM (network `allow` lists and `--allow-host` holes, JSON arrays) and the
 * size of its /persist file system. NULL for older rows: no list, no holes, and a /persist that is
 * still the plain host dir it was made as.
 */
export class AddEgressAndPersistSize1764800000000 implements MigrationInterface {
  name = 'AddEgressAndPersistSize1764800000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "vm" ADD COLUMN "egress_allow" text`)
    await q.query(`ALTER TABLE "vm" ADD COLUMN "allow_hosts" text`)
    await q.query(`ALTER TABLE "vm" ADD COLUMN "persist_mib" integer`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "vm" DROP COLUMN "persist_mib"`)
    await q.query(`ALTER TABLE "vm" DROP COLUMN "allow_hosts"`)
    await q.query(`ALTER TABLE "vm" DROP COLUMN "egress_allow"`)
  }
}
