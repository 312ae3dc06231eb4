import {EntitySchema} from 'typeorm'
import type {VmRecord} from './vm-record.js'

/** The `vm` table. Decorator-free so that the ESM build needs no reflect-metadata. */
export const VmEntity = new EntitySchema<VmRecord>({
  name: 'Vm',
  tableName: 'vm',
  columns: {
    id: {type: 'varchar', primary: true},
    name: {type: 'varchar', nullable: true, unique: true},
    language: {type: 'varchar'},
    version: {type: 'varchar', nullable: true},
    plugin: {type: 'varchar'},
    image: {type: 'varchar'},
    imageSource: {type: 'varchar', name: 'image_source'},
    launcher: {type: 'varchar'},
    cpus: {type: 'real'},
    memoryMib: {type: 'integer', name: 'memory_mib'},
    diskMib: {type: 'integer', name: 'disk_mib'},
    pids: {type: 'integer'},
    network: {type: 'varchar'},
    egressAllow: {type: 'simple-json', name: 'egress_allow', nullable: true},
    allowHosts: {type: 'simple-json', name: 'allow_hosts', nullable: true},
    persist: {type: 'boolean'},
    persistMib: {type: 'integer', name: 'persist_mib', nullable: true},
    status: {type: 'varchar'},
    containerRef: {type: 'varchar', name: 'container_ref', nullable: true},
    rootfsRef: {type: 'varchar', name: 'rootfs_ref', nullable: true},
    bundleRef: {type: 'varchar', name: 'bundle_ref', nullable: true},
    ownerPid: {type: 'integer', name: 'owner_pid', nullable: true},
    createdAt: {type: 'datetime', name: 'created_at'},
    updatedAt: {type: 'datetime', name: 'updated_at'},
    lastError: {type: 'text', name: 'last_error', nullable: true},
  },
  indices: [{name: 'IDX_vm_status', columns: ['status']}],
})
